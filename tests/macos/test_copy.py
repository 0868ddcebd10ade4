"""The macOS backend: what is copied, not cloned, and what atomic=True clones instead.

An existing destination is written in place with fcopyfile(COPYFILE_DATA),
as shutil does, and so is every file with reflink="never"; fcopyfile
gives way to read/write where shutil's does. ``atomic=True`` replaces an
existing destination with a clone.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.fakes.libsystem import (
    FakeLibSystem,
    names_in,
    source_file,
    xattrs_of,
)

# -- existing destinations ---------------------------------------------------------


def _existing(tmp_path: Path, mode: int = 0o604) -> tuple[Path, bytes, os.stat_result]:
    dst = tmp_path / "dst"
    old = b"old content, longer than nothing" * 100
    dst.write_bytes(old)
    dst.chmod(mode)
    os.utime(dst, ns=(7_000_000_000, 8_000_000_000))
    os.link(dst, tmp_path / "hardlink")
    return dst, old, os.stat(dst)


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy, cowpath.copy2])
def test_an_existing_destination_is_copied_in_place_never_cloned(
    fake: FakeLibSystem, tmp_path: Path, function: Callable[..., Any]
) -> None:
    src = source_file(tmp_path, mode=0o640)
    dst, _, before = _existing(tmp_path)
    report = cowpath.CopyReport()
    function(src, dst, report=report)
    assert not fake.named("fclonefileat")
    [(_, src_fd, dst_fd)] = fake.named("fcopyfile")
    assert src_fd != dst_fd
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert os.stat(dst).st_ino == before.st_ino
    assert (tmp_path / "hardlink").read_bytes() == src.read_bytes()
    expected_mode = 0o604 if function is cowpath.copyfile else 0o640
    assert stat.S_IMODE(os.stat(dst).st_mode) == expected_mode


def test_an_existing_destination_is_written_through_a_symlink(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    dst, _, before = _existing(tmp_path)
    os.symlink(dst, tmp_path / "link")
    cowpath.copyfile(src, tmp_path / "link")
    assert os.path.islink(tmp_path / "link")
    assert os.stat(dst).st_ino == before.st_ino
    assert dst.read_bytes() == src.read_bytes()
    assert not fake.named("fclonefileat")


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy, cowpath.copy2])
def test_always_onto_an_existing_destination_raises_and_changes_nothing(
    fake: FakeLibSystem, tmp_path: Path, function: Callable[..., Any]
) -> None:
    src = source_file(tmp_path, mode=0o600)
    dst, old, before = _existing(tmp_path, mode=0o644)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        function(src, dst, reflink="always")
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.EEXIST
    assert (info.value.filename, info.value.filename2) == (str(src), str(dst))
    assert dst.read_bytes() == old
    after = os.stat(dst)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mode,
        before.st_mtime_ns,
    )
    assert not fake.named("fclonefileat")
    assert names_in(tmp_path) == {"src", "dst", "hardlink"}


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy2])
def test_atomic_replaces_an_existing_destination_with_a_clone(
    fake: FakeLibSystem, tmp_path: Path, function: Callable[..., Any]
) -> None:
    src = source_file(tmp_path, mode=0o640)
    os.setxattr(src, "user.tag", b"x")
    dst, old, before = _existing(tmp_path, mode=0o604)
    report = cowpath.CopyReport()
    function(src, dst, reflink="always", atomic=True, report=report)
    assert report.files_cloned == 1
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_ino != before.st_ino
    assert (tmp_path / "hardlink").read_bytes() == old  # other links keep the old file
    expected_mode = 0o604 if function is cowpath.copyfile else 0o640
    assert stat.S_IMODE(os.stat(dst).st_mode) == expected_mode
    assert xattrs_of(dst) == {}
    assert names_in(tmp_path) == {"src", "dst", "hardlink"}


def test_atomic_replacement_keeps_the_old_owner_where_root_may_give_it(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file away needs root")
    src = source_file(tmp_path, mode=0o4755)
    dst, _, _ = _existing(tmp_path)
    os.chown(dst, 12345, 23456)
    cowpath.copy(src, dst, atomic=True)
    assert fake.named("fclonefileat")
    st = os.stat(dst)
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    assert stat.S_IMODE(st.st_mode) == 0o4755  # the mode comes after the chown, which clears setuid


def test_atomic_through_a_symlink_keeps_the_link(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    dst, _, _ = _existing(tmp_path)
    os.symlink("dst", tmp_path / "link")
    cowpath.copyfile(src, tmp_path / "link", atomic=True)
    assert os.path.islink(tmp_path / "link")
    assert dst.read_bytes() == src.read_bytes()
    assert fake.named("fclonefileat")


# -- the copy path: fcopyfile(COPYFILE_DATA), as shutil ---------------------------------


def test_never_copies_with_fcopyfile_into_the_staged_file(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    report = cowpath.CopyReport()
    cowpath.copy2(src, tmp_path / "dst", reflink="never", report=report)
    assert not fake.named("fclonefileat")
    [(_, src_fd, dst_fd)] = fake.named("fcopyfile")
    assert src_fd != dst_fd
    assert (report.files_copied, report.bytes_copied) == (1, 70_000)
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_fcopyfile_giving_up_falls_back_to_read_write(fake: FakeLibSystem, tmp_path: Path, code: int) -> None:
    src = source_file(tmp_path)
    fake.errors["fcopyfile"] = [code]
    report = cowpath.CopyReport()
    cowpath.copyfile(src, tmp_path / "dst", reflink="never", report=report)
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert report.bytes_copied == 70_000


def test_without_posix_fcopyfile_data_is_read_and_written(fake: FakeLibSystem, tmp_path: Path) -> None:
    fake.has_fcopyfile = False
    src = source_file(tmp_path)
    cowpath.copyfile(src, tmp_path / "dst", reflink="never")
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()


def test_fcopyfile_real_errors_raise_with_both_names(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    fake.errors["fcopyfile"] = [errno.ENOSPC]
    with pytest.raises(OSError) as info:
        cowpath.copyfile(src, tmp_path / "dst", reflink="never")
    assert info.value.errno == errno.ENOSPC
    assert (info.value.filename, info.value.filename2) == (str(src), str(tmp_path / "dst"))
    assert names_in(tmp_path) == {"src"}
