"""The macOS backend: refused clones, real errors, and names that change meanwhile.

A refused clone is copied (or, with reflink="always", raises
ReflinkNotSupportedError with both names); a real error raises as it is;
and either way nothing is left behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest

import cowpath
from tests.fakes.darwin import UF_HIDDEN
from tests.fakes.libsystem import (
    FakeLibSystem,
    names_in,
    set_flags,
    source_file,
)

# -- when the clone is refused, and real errors ----------------------------------------


@pytest.mark.parametrize(
    "code",
    [errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EDEADLK, errno.EINVAL, errno.EPERM, errno.EACCES],
)
def test_refused_clone_copies_or_raises_with_both_names(
    fake: FakeLibSystem, tmp_path: Path, code: int
) -> None:
    src = source_file(tmp_path, mode=0o750)
    fake.errors["fclonefileat"] = [code]
    report = cowpath.CopyReport()
    cowpath.copy(src, tmp_path / "dst", report=report)
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == 0o750
    assert fake.named("fcopyfile")
    fake.errors["fclonefileat"] = [code]
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        cowpath.copy(src, tmp_path / "dst2", reflink="always")
    assert info.value.errno == code
    assert (info.value.filename, info.value.filename2) == (str(src), str(tmp_path / "dst2"))
    assert names_in(tmp_path) == {"src", "dst"}


@pytest.mark.parametrize("mode", ["auto", "always"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM])
def test_real_errors_raise_with_both_names_and_leave_nothing(
    fake: FakeLibSystem, tmp_path: Path, code: int, mode: str
) -> None:
    src = source_file(tmp_path)
    fake.errors["fclonefileat"] = [code]
    with pytest.raises(OSError) as info:
        cowpath.copy2(src, tmp_path / "dst", reflink=mode)  # type: ignore[arg-type]
    assert not isinstance(info.value, cowpath.ReflinkNotSupportedError)
    assert info.value.errno == code
    assert (info.value.filename, info.value.filename2) == (str(src), str(tmp_path / "dst"))
    assert not fake.named("fcopyfile")
    assert names_in(tmp_path) == {"src"}


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_a_missing_directory_raises_what_shutil_raises(
    fake: FakeLibSystem, tmp_path: Path, mode: str
) -> None:
    src = source_file(tmp_path)
    with pytest.raises(OSError) as theirs:
        shutil.copyfile(src, tmp_path / "missing" / "dst")
    with pytest.raises(OSError) as mine:
        cowpath.copyfile(src, tmp_path / "missing" / "dst", reflink=mode)  # type: ignore[arg-type]
    assert type(mine.value) is type(theirs.value)
    assert (mine.value.errno, mine.value.filename, mine.value.filename2) == (
        theirs.value.errno,
        theirs.value.filename,
        theirs.value.filename2,
    )
    assert fake.named("fclonefileat")  # it was tried, and said ENOENT
    assert names_in(tmp_path) == {"src"}


@pytest.mark.parametrize("mode", ["auto", "always"])
@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("fremovexattr", errno.EPERM),
        ("fchflags", errno.EPERM),
        ("fremovexattr", errno.EIO),
        ("flistxattr", errno.EIO),
    ],
)
def test_a_failure_after_the_clone_exists_leaves_no_staging_file(
    fake: FakeLibSystem, tmp_path: Path, call: str, code: int, mode: str
) -> None:
    src = source_file(tmp_path)
    os.setxattr(src, "user.com.apple.macl", b"\x01")
    set_flags(src, UF_HIDDEN)
    fake.errors[call] = [code]
    refused = code == errno.EPERM  # cannot make the clone into shutil's result: copy instead
    if refused and mode == "auto":
        report = cowpath.CopyReport()
        cowpath.copyfile(src, tmp_path / "dst", report=report, reflink=mode)  # type: ignore[arg-type]
        assert (report.files_cloned, report.files_copied) == (0, 1)
        assert (tmp_path / "dst").read_bytes() == src.read_bytes()
        assert names_in(tmp_path) == {"src", "dst"}
        return
    with pytest.raises(OSError) as info:
        cowpath.copyfile(src, tmp_path / "dst", reflink=mode)  # type: ignore[arg-type]
    assert isinstance(info.value, cowpath.ReflinkNotSupportedError) == refused
    assert info.value.errno == code
    assert (info.value.filename, info.value.filename2) == (str(src), str(tmp_path / "dst"))
    assert names_in(tmp_path) == {"src"}


def test_a_protected_attribute_means_a_copy(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    os.setxattr(src, "user.com.apple.provenance", b"\x01\x02")
    fake.protected.add(b"com.apple.provenance")
    report = cowpath.CopyReport()
    cowpath.copy2(src, tmp_path / "dst", report=report)
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert names_in(tmp_path) == {"src", "dst"}


def test_an_interrupt_while_shaping_the_clone_leaves_nothing(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)

    def interrupt(fd: int) -> list[bytes]:
        raise KeyboardInterrupt

    fake.flistxattr = interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cowpath.copyfile(src, tmp_path / "dst")
    assert fake.named("fclonefileat")
    assert names_in(tmp_path) == {"src"}


def test_enosys_switches_cloning_off_for_the_process(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    fake.errors["fclonefileat"] = [errno.ENOSYS]
    cowpath.copyfile(src, tmp_path / "one")
    cowpath.copyfile(src, tmp_path / "two")
    assert len(fake.named("fclonefileat")) == 1
    assert (tmp_path / "two").read_bytes() == src.read_bytes()


def test_a_destination_that_appears_meanwhile_is_replaced_whole(fake: FakeLibSystem, tmp_path: Path) -> None:
    # Another copy finished first: its file is replaced by the whole clone,
    # never rewritten in place (late copies writing into it could mix).
    src = source_file(tmp_path)
    dst = tmp_path / "dst"

    def appear(name: bytes) -> None:
        dst.write_bytes(b"someone else's")
        os.link(dst, tmp_path / "other-link")

    fake.before_clone = appear
    report = cowpath.CopyReport()
    cowpath.copyfile(src, dst, report=report)
    assert report.files_cloned == 1
    assert dst.read_bytes() == src.read_bytes()
    assert (tmp_path / "other-link").read_bytes() == b"someone else's"
    assert names_in(tmp_path) == {"src", "dst", "other-link"}


def test_a_directory_that_appears_meanwhile_gets_shutils_error(fake: FakeLibSystem, tmp_path: Path) -> None:
    src = source_file(tmp_path)
    dst = tmp_path / "dst"
    fake.before_clone = lambda name: dst.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        cowpath.copyfile(src, dst)
    assert caught.value.filename == str(dst)
    assert names_in(tmp_path) == {"src", "dst"}
    assert not list(dst.iterdir())
