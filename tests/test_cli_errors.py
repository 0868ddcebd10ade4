"""The command's rough edges: every bad input is one line and an exit status, never a traceback.

Each case runs the command in a subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.faultutil import SmallFilesystems

ROOT = Path(__file__).resolve().parent.parent


def python(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """This Python run with ``args``, the checkout's cowpath importable; its output as text."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
    )


def cowpath(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return python("-m", "cowpath", *args, env=env, cwd=cwd)


def _no_traceback(done: subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]) -> None:
    err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode(errors="replace")
    assert "Traceback" not in err
    assert "Exception ignored" not in err


@pytest.mark.parametrize("command", ["cp", "mv"])
@pytest.mark.parametrize("value", ["yes", "Auto", " never", "1"])
def test_a_bad_cowpath_reflink_is_one_line_and_exit_2(tmp_path: Path, command: str, value: str) -> None:
    (tmp_path / "a").write_text("data")
    done = cowpath(command, tmp_path / "a", tmp_path / "b", env={"COWPATH_REFLINK": value})
    assert done.returncode == 2
    assert done.stderr == (
        f"cowpath: COWPATH_REFLINK must be one of 'auto', 'always', 'never', not {value!r}\n"
    )
    assert (tmp_path / "a").read_text() == "data"
    assert not (tmp_path / "b").exists()


def test_an_empty_cowpath_reflink_means_auto(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("data")
    done = cowpath("cp", tmp_path / "a", tmp_path / "b", env={"COWPATH_REFLINK": ""})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b").read_text() == "data"


@pytest.mark.parametrize(
    "args",
    [
        ["cp", "--workers=0", "A", "B"],
        ["cp", "--workers=-3", "A", "B"],
        ["cp", "--workers=two", "A", "B"],
        ["cp", "--workers=100000000", "A", "B"],
        ["cp", "--reflink=yes", "A", "B"],
        ["mv", "--reflink=", "A", "B"],
        ["dedupe", "--min-size=12Q", "A"],
        ["dedupe", "--min-size=-1", "A"],
        ["du"],
        ["cp"],
        ["check"],
        ["frobnicate"],
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "A").write_text("data")
    done = cowpath(*args, cwd=tmp_path)
    assert done.returncode == 2
    _no_traceback(done)
    assert "usage: cowpath" in done.stderr
    assert not (tmp_path / "B").exists()


@pytest.mark.parametrize("command", ["cp", "mv"])
def test_usage_has_the_shape_of_cp(command: str) -> None:
    done = cowpath(command, "--help")
    assert done.stdout.startswith(
        f"usage: cowpath {command} [OPTIONS] SRC DEST\n       cowpath {command} [OPTIONS] SRC... DIRECTORY\n"
    )
    bare = cowpath(command)
    assert bare.returncode == 2
    assert "[SRC... DEST ...]" not in bare.stderr
    assert f"cowpath {command} [OPTIONS] SRC... DIRECTORY" in bare.stderr


def test_no_summary_after_errors_alone(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args, error in [
        (("cp", missing, tmp_path / "x"), f"cowpath: cannot copy '{missing}' to '{tmp_path / 'x'}'"),
        (("cp", "-r", missing, tmp_path / "x"), f"cowpath: cannot copy '{missing}' to '{tmp_path / 'x'}'"),
        (("mv", missing, tmp_path / "x"), f"cowpath: cannot move '{missing}' to '{tmp_path / 'x'}'"),
        (("clean", missing), f"cowpath: cannot clean '{missing}'"),
        (("dedupe", missing), f"cowpath: cannot dedupe '{missing}'"),
    ]:
        done = cowpath(*args)
        assert done.returncode == 1, args
        assert done.stderr.splitlines() == [f"{error}: No such file or directory"], args
        assert done.stdout == "", args


def test_du_of_a_missing_path_has_no_line_of_zeros(tmp_path: Path) -> None:
    done = cowpath("du", "-s", tmp_path / "missing")
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["     Total   Exclusive  Set shared  Filename"]
    assert done.stderr == f"cowpath: cannot read '{tmp_path / 'missing'}': No such file or directory\n"


def test_summaries_name_only_what_happened(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 300)
    moved = cowpath("mv", "-v", tmp_path / "a", tmp_path / "b")
    assert moved.returncode == 0, moved.stderr
    assert moved.stderr == "cowpath: 1 file renamed (300 B)\n"
    assert moved.stdout == f"renamed '{tmp_path / 'a'}' -> '{tmp_path / 'b'}'\n"
    copied = cowpath("cp", "--reflink=never", tmp_path / "b", tmp_path / "c")
    assert copied.stderr == "cowpath: 0 files cloned (0 B shared), 1 copied (300 B)\n"


def _big_tree(root: Path, files: int) -> None:
    for d in range(files // 100):
        (root / f"directory-{d:04}").mkdir(parents=True)
        for f in range(100):
            (root / f"directory-{d:04}" / f"file-with-a-long-name-{f:04}").write_bytes(b"x" * (f + 1))


def _first_line_then_close(args: list[str]) -> tuple[int, str, str]:
    """Run the command, read one line of its stdout and close the pipe, as ``| head -1`` does."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cowpath", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=120), first, err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE is POSIX")
def test_du_into_a_closed_pipe_stops_quietly(ext4: Path) -> None:
    _big_tree(ext4 / "tree", 3000)  # far more output than a pipe holds
    status, first, err = _first_line_then_close(["du", str(ext4 / "tree")])
    assert first.split() == ["Total", "Exclusive", "Set", "shared", "Filename"]
    assert status == 128 + signal.SIGPIPE
    assert err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGPIPE is POSIX")
def test_cp_verbose_into_a_closed_pipe_stops_copying(tmp_path: Path) -> None:
    _big_tree(tmp_path / "tree", 3000)
    status, first, err = _first_line_then_close(
        ["cp", "-r", "-v", str(tmp_path / "tree"), str(tmp_path / "out")]
    )
    assert first.startswith(f"'{tmp_path / 'tree'}/")
    assert status == 128 + signal.SIGPIPE
    # Not one "cannot copy ...: Broken pipe" per file: the copy stops.
    assert err == ""
    copied = sum(1 for path in (tmp_path / "out").rglob("*") if path.is_file())
    assert 0 < copied < 3000


_INTERRUPTED = """
import sys
import cowpath._cli, cowpath._clidedupe
def interrupt(*args, **kwargs):
    raise KeyboardInterrupt
setattr({module}, {name!r}, interrupt)
sys.exit(cowpath._cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("cowpath._clidedupe", "walk", ["du", "."]),
        ("cowpath._cli", "supports_reflink", ["check", "."]),
        ("cowpath._cli", "clean_staging", ["clean", "."]),
        ("cowpath._cli", "_parser", ["cp", "a", "b"]),
    ],
)
def test_ctrl_c_exits_130_without_a_traceback(
    tmp_path: Path, module: str, name: str, args: list[str]
) -> None:
    """Ctrl-C where no command catches it itself (cp, mv and dedupe do, and say what it left)."""
    code = textwrap.dedent(_INTERRUPTED.format(module=module, name=name))
    done = python("-c", code, *args, cwd=tmp_path)
    assert done.returncode == 130
    assert done.stderr == ""


@pytest.mark.skipif(sys.platform != "linux", reason="names are bytes on Linux; APFS and NTFS want Unicode")
def test_names_that_are_not_utf8_are_printed_as_they_are(tmp_path: Path) -> None:
    """A Latin-1 name under a UTF-8 locale: written back byte for byte, not an UnicodeEncodeError."""
    src = os.fsencode(tmp_path / "src")
    os.mkdir(src)
    name = b"caf\xe9.txt"
    with open(os.path.join(src, name), "wb") as f:
        f.write(b"data")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    dst = os.fsencode(tmp_path / "dst")
    done = subprocess.run(
        [sys.executable, "-m", "cowpath", "cp", "-r", "-v", src, dst],
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _no_traceback(done)
    assert done.stdout == b"'" + os.path.join(src, name) + b"' -> '" + os.path.join(dst, name) + b"'\n"
    failed = subprocess.run(
        [sys.executable, "-m", "cowpath", "cp", os.path.join(src, name), os.path.join(dst, b"no", b"dir")],
        capture_output=True,
        env=env,
        check=False,
    )
    assert failed.returncode == 1
    assert os.path.join(src, name) in failed.stderr
    _no_traceback(failed)


_AS_NOBODY = """
import os, sys
import cowpath, cowpath._cli
# Everything imported while the interpreter's files (under /root here) are
# still readable: what the CLI imports on demand too.
import concurrent.futures, locale, subprocess
cowpath.backend_name()
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
sys.exit(cowpath._cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to become nobody")
def test_paths_nobody_cannot_read_are_one_line_errors(small: SmallFilesystems) -> None:
    """mv onto a directory whose listing is refused; cp, du and check of unreadable paths."""
    base = small.make("tmpfs", 64)
    os.chmod(base, 0o777)
    (base / "src").mkdir()
    (base / "src" / "f").write_text("data")
    os.chown(base / "src", 65534, 65534)
    os.chown(base / "src" / "f", 65534, 65534)
    (base / "dst" / "src").mkdir(parents=True)
    (base / "dst" / "src" / "other").write_text("x")
    os.chmod(base / "dst" / "src", 0o300)  # enterable, not listable, by nobody
    (base / "locked" / "inner").mkdir(parents=True)
    os.chmod(base / "locked", 0)
    for args, error in [
        (["mv", "src", "dst"], "cowpath: cannot move 'src' to 'dst/src': Permission denied"),
        (["cp", "-r", "locked", "copy"], "cowpath: cannot copy 'locked' to 'copy': Permission denied"),
        (["cp", "src/f", "locked/inner/"], "cowpath: target 'locked/inner/': Permission denied"),
        (["cp", "src/f", "locked/f"], "cowpath: cannot copy 'src/f' to 'locked/f': Permission denied"),
        (["du", "locked"], "cowpath: cannot read 'locked': Permission denied"),
        (["clean", "locked"], "cowpath: cannot clean 'locked': Permission denied"),
    ]:
        done = python("-c", _AS_NOBODY, *args, cwd=base)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.splitlines() == [error], args
    assert (base / "src" / "f").read_text() == "data"
