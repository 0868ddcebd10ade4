"""Clones on real Linux filesystems are real: shared extents, no space, CoW isolation."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import cowpath
from tests.fsutil import data_bytes, free_bytes, shared_bytes

pytestmark = pytest.mark.skipif(os.uname().sysname != "Linux", reason="Linux backend")

MIB = 1024 * 1024


def _write(path: Path, size: int, seed: int = 1) -> bytes:
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    data = bytes((b + seed) % 256 for b in data[:4096]) + data[4096:]
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy, cowpath.copy2, cowpath.reflink])
def test_clone_shares_every_extent(cloning_fs: Path, function: object) -> None:
    src = cloning_fs / "src"
    dst = cloning_fs / "dst"
    data = _write(src, 8 * MIB)
    report = cowpath.CopyReport()
    function(src, dst, report=report)  # type: ignore[operator]
    assert dst.read_bytes() == data
    assert shared_bytes(dst) == data_bytes(dst) >= len(data)
    assert shared_bytes(src) >= len(data)
    assert (report.files_cloned, report.bytes_cloned, report.files_copied) == (1, len(data), 0)


def test_clone_takes_no_space(cloning_fs: Path) -> None:
    src = cloning_fs / "src"
    _write(src, 64 * MIB)
    before = free_bytes(cloning_fs)
    for i in range(4):
        cowpath.copyfile(src, cloning_fs / f"dst{i}")
    after = free_bytes(cloning_fs)
    # Four real copies would take 256 MiB; clones take only metadata.
    assert before - after < 4 * MIB, (before, after)


def test_writing_to_clone_leaves_source(cloning_fs: Path) -> None:
    src = cloning_fs / "src"
    dst = cloning_fs / "dst"
    data = _write(src, 3 * MIB + 17)
    cowpath.reflink(src, dst)
    with open(dst, "r+b") as f:
        f.seek(MIB)
        f.write(b"X" * 4096)
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
    assert src.read_bytes() == data
    changed = dst.read_bytes()
    assert changed[MIB : MIB + 4096] == b"X" * 4096
    assert changed[:MIB] == data[:MIB]
    assert changed.endswith(b"tail")
    # The untouched ranges are still shared after the write.
    assert 0 < shared_bytes(dst) < data_bytes(dst)


def test_copy_keeps_executable_bit_on_clone(cloning_fs: Path) -> None:
    src = cloning_fs / "tool"
    _write(src, 10000)
    src.chmod(0o755)
    dst = cowpath.copy(src, cloning_fs / "tool2")
    assert os.stat(dst).st_mode & 0o777 == 0o755
    assert shared_bytes(dst) > 0


@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_auto_copies_where_clones_are_impossible(kind: str, request: pytest.FixtureRequest) -> None:
    where: Path = request.getfixturevalue(kind)
    src = where / "src"
    data = _write(src, MIB + 5)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, where / "dst", report=report)
    assert (where / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied, report.bytes_copied) == (0, 1, len(data))


@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_always_raises_where_clones_are_impossible(kind: str, request: pytest.FixtureRequest) -> None:
    where: Path = request.getfixturevalue(kind)
    src = where / "src"
    _write(src, 1000)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        cowpath.copyfile(src, where / "dst", reflink="always")
    assert info.value.errno == errno.EOPNOTSUPP
    assert (info.value.filename, info.value.filename2) == (str(src), str(where / "dst"))
    assert not (where / "dst").exists()


def test_always_across_filesystems_raises_exdev(cross_fs: tuple[Path, Path]) -> None:
    a, b = cross_fs
    _write(a / "src", 1000)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        cowpath.reflink(a / "src", b / "dst")
    assert info.value.errno == errno.EXDEV
    assert isinstance(info.value, OSError)
    assert not (b / "dst").exists()


def test_never_makes_no_shared_extents(cloning_fs: Path) -> None:
    src = cloning_fs / "src"
    data = _write(src, 4 * MIB)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, cloning_fs / "dst", reflink="never", report=report)
    assert (cloning_fs / "dst").read_bytes() == data
    assert shared_bytes(cloning_fs / "dst") == 0
    assert shared_bytes(src) == 0
    assert report.files_copied == 1


def test_environment_sets_default(cloning_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = cloning_fs / "src"
    _write(src, MIB)
    monkeypatch.setenv("COWPATH_REFLINK", "never")
    cowpath.copyfile(src, cloning_fs / "dst")
    assert shared_bytes(cloning_fs / "dst") == 0
    # An explicit argument wins over the environment.
    cowpath.copyfile(src, cloning_fs / "dst2", reflink="auto")
    assert shared_bytes(cloning_fs / "dst2") > 0
    monkeypatch.setenv("COWPATH_REFLINK", "sometimes")
    with pytest.raises(ValueError, match="COWPATH_REFLINK"):
        cowpath.copyfile(src, cloning_fs / "dst3")


@pytest.mark.parametrize(
    ("old_size", "new_size"), [(10000, 5000), (10000, 8192), (5000, 9000), (1, 0), (9000, 9000)]
)
def test_clone_onto_existing_destination_in_place(cloning_fs: Path, old_size: int, new_size: int) -> None:
    src = cloning_fs / "src"
    dst = cloning_fs / "dst"
    link = cloning_fs / "hardlink"
    data = _write(src, new_size, seed=3)
    _write(dst, old_size, seed=7)
    dst.chmod(0o640)
    os.link(dst, link)
    inode = dst.stat().st_ino
    report = cowpath.CopyReport()
    cowpath.copyfile(src, dst, report=report)
    assert dst.read_bytes() == data
    assert link.read_bytes() == data
    assert dst.stat().st_ino == inode
    assert dst.stat().st_mode & 0o777 == 0o640
    assert report.files_cloned == 1
    if new_size >= 4096:
        assert shared_bytes(dst) > 0


def test_refused_clone_leaves_existing_destination(cross_fs: tuple[Path, Path]) -> None:
    a, b = cross_fs
    _write(a / "src", 5000)
    old = _write(b / "dst", 10000, seed=9)
    mtime = (b / "dst").stat().st_mtime_ns
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        cowpath.copyfile(a / "src", b / "dst", reflink="always")
    assert (b / "dst").read_bytes() == old
    assert (b / "dst").stat().st_mtime_ns == mtime


def test_supports_reflink(
    mounts: object, cloning_fs: Path, ext4: Path, tmpfs: Path, cross_fs: tuple[Path, Path]
) -> None:
    assert cowpath.supports_reflink(cloning_fs)
    assert cowpath.supports_reflink(cloning_fs / "not-yet-a-file")
    assert not cowpath.supports_reflink(ext4)
    assert not cowpath.supports_reflink(tmpfs)
    assert not cowpath.supports_reflink(*cross_fs)
    for where in (cloning_fs, ext4, tmpfs, *cross_fs):
        assert list(where.iterdir()) == [], "the probe left files behind"
    with pytest.raises(FileNotFoundError):
        cowpath.supports_reflink(ext4 / "missing" / "deeper")


def test_a_clone_call_that_does_nothing_is_not_trusted(
    cloning_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    calls: list[int] = []

    def do_nothing(fd: int, request: int, arg: int = 0, *rest: object) -> int:
        calls.append(request)
        return 0  # as pyfakefs's fcntl.ioctl does

    monkeypatch.setattr(fcntl, "ioctl", do_nothing)
    src = cloning_fs / "src"
    data = _write(src, 3 * MIB + 1)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, cloning_fs / "dst", report=report)
    assert calls, "the clone was attempted"
    assert (cloning_fs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        cowpath.reflink(src, cloning_fs / "dst2")
    assert not (cloning_fs / "dst2").exists()
