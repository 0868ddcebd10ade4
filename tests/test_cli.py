"""The cowpath command, run as a user runs it, on real filesystems."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fsutil import shared_bytes


def cowpath(*args: str | os.PathLike[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cowpath", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(50_000))
    (root / "sub" / "b.bin").write_bytes(os.urandom(20_000))
    (root / "sub" / "deep" / "c.txt").write_text("hello\n")
    (root / "sub" / "link").symlink_to("b.bin")
    os.chmod(root / "a.bin", 0o751)


def test_cp_file_clones_and_keeps_mode(cloning_fs: Path) -> None:
    (cloning_fs / "f").write_bytes(os.urandom(100_000))
    os.chmod(cloning_fs / "f", 0o700)
    done = cowpath("cp", cloning_fs / "f", cloning_fs / "g", check=True)
    assert (cloning_fs / "g").read_bytes() == (cloning_fs / "f").read_bytes()
    assert shared_bytes(cloning_fs / "g") > 0
    assert os.stat(cloning_fs / "g").st_mode & 0o777 == 0o700
    assert "1 file cloned (" in done.stderr


def test_cp_recursive_into_existing_directory(cloning_fs: Path) -> None:
    _tree(cloning_fs / "src")
    (cloning_fs / "dest").mkdir()
    done = cowpath("cp", "-r", "-p", cloning_fs / "src", cloning_fs / "dest", check=True)
    copied = cloning_fs / "dest" / "src"
    assert (copied / "sub" / "deep" / "c.txt").read_text() == "hello\n"
    assert os.readlink(copied / "sub" / "link") == "b.bin"  # links stay links, as with cp -r
    assert shared_bytes(copied / "a.bin") > 0
    src_st, dst_st = os.stat(cloning_fs / "src" / "a.bin"), os.stat(copied / "a.bin")
    assert (dst_st.st_mode, dst_st.st_mtime_ns) == (src_st.st_mode, src_st.st_mtime_ns)
    assert "3 files cloned" in done.stderr


def test_cp_several_sources_need_a_directory(ext4: Path) -> None:
    for name in ("x", "y"):
        (ext4 / name).write_text(name)
    done = cowpath("cp", ext4 / "x", ext4 / "y", ext4 / "nodir")
    assert done.returncode == 1
    assert "is not a directory" in done.stderr
    assert not (ext4 / "nodir").exists()
    (ext4 / "dir").mkdir()
    cowpath("cp", ext4 / "x", ext4 / "y", ext4 / "dir", check=True)
    assert (ext4 / "dir" / "x").read_text() == "x"
    assert (ext4 / "dir" / "y").read_text() == "y"


def test_cp_trailing_slash_on_missing_directory(ext4: Path) -> None:
    (ext4 / "x").write_text("x")
    done = cowpath("cp", ext4 / "x", f"{ext4 / 'missing'}/")
    assert done.returncode == 1
    assert not (ext4 / "missing").exists()


def test_cp_directory_without_r(ext4: Path) -> None:
    (ext4 / "d").mkdir()
    done = cowpath("cp", ext4 / "d", ext4 / "e")
    assert done.returncode == 1
    assert "-r not specified; omitting directory" in done.stderr


def test_cp_reports_each_failure_and_continues(ext4: Path) -> None:
    (ext4 / "ok").write_text("fine")
    (ext4 / "dir").mkdir()
    done = cowpath("cp", ext4 / "missing", ext4 / "ok", ext4 / "dir")
    assert done.returncode == 1
    assert f"cannot copy '{ext4 / 'missing'}'" in done.stderr
    assert "No such file or directory" in done.stderr
    assert (ext4 / "dir" / "ok").read_text() == "fine"


def test_cp_reflink_always_fails_on_ext4_and_leaves_nothing(ext4: Path) -> None:
    (ext4 / "x").write_bytes(b"data" * 1000)
    done = cowpath("cp", "--reflink=always", ext4 / "x", ext4 / "y")
    assert done.returncode == 1
    assert "Operation not supported" in done.stderr
    assert not (ext4 / "y").exists()


def test_cp_reflink_never_copies(cloning_fs: Path) -> None:
    (cloning_fs / "x").write_bytes(os.urandom(100_000))
    done = cowpath("cp", "--reflink=never", cloning_fs / "x", cloning_fs / "y", check=True)
    assert shared_bytes(cloning_fs / "y") == 0
    assert "0 files cloned" in done.stderr
    assert "1 copied" in done.stderr


def test_cp_verbose_lists_files(ext4: Path) -> None:
    _tree(ext4 / "src")
    done = cowpath("cp", "-r", "-v", "-q", ext4 / "src", ext4 / "out", check=True)
    assert f"'{ext4 / 'src' / 'a.bin'}' -> '{ext4 / 'out' / 'a.bin'}'" in done.stdout
    assert done.stderr == ""


def test_cp_into_itself_is_refused(ext4: Path) -> None:
    _tree(ext4 / "src")
    done = cowpath("cp", "-r", ext4 / "src", ext4 / "src" / "sub")
    assert done.returncode == 1
    assert "into itself" in done.stderr


def test_cp_interrupted_leaves_only_whole_files(xfs: Path) -> None:
    src = xfs / "src"
    for d in range(40):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (src / f"d{d}" / f"f{f}").write_bytes(os.urandom(4096 + f))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cowpath",
            "cp",
            "-r",
            "--reflink=never",
            "--workers=2",
            str(src),
            str(xfs / "dst"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not any((xfs / "dst").rglob("f*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    copied = [p for p in (xfs / "dst").rglob("*") if p.is_file()]
    if proc.returncode == 0:
        pytest.skip("the copy finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert len(copied) < 2000
    for path in copied:
        assert path.read_bytes() == (src / path.relative_to(xfs / "dst")).read_bytes(), path


def test_check_says_yes_on_cloning_filesystem(cloning_fs: Path) -> None:
    done = cowpath("check", cloning_fs)
    assert done.returncode == 0
    assert "clones here: yes" in done.stdout
    assert any(kind in done.stdout for kind in ("btrfs", "xfs"))


def test_check_explains_ext4(ext4: Path) -> None:
    done = cowpath("check", ext4)
    assert done.returncode == 1
    assert "ext4" in done.stdout
    assert "clones here: no: ext4 cannot share extents" in done.stdout


def test_check_explains_cross_filesystem(cross_fs: tuple[Path, Path]) -> None:
    done = cowpath("check", *cross_fs)
    assert done.returncode == 1
    assert "different filesystems" in done.stdout


def test_check_missing_path(ext4: Path) -> None:
    done = cowpath("check", ext4 / "no" / "such")
    assert done.returncode == 2
    assert "No such file or directory" in done.stderr


def test_version() -> None:
    import cowpath as package

    done = cowpath("--version", check=True)
    assert done.stdout.strip() == f"cowpath {package.__version__}"
