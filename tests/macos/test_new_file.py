"""The macOS backend: a new destination is a clone, shaped into what the shutil function gives."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from cowpath import _engine, _select
from cowpath._backend import FileJob
from cowpath._common import Metadata
from cowpath._engine import transfer
from cowpath._libsystem import (
    AT_FDCWD,
    CLONE_NOFOLLOW,
    CLONE_NOOWNERCOPY,
    SF_RESTRICTED,
    UF_APPEND,
    UF_COMPRESSED,
    UF_IMMUTABLE,
)
from cowpath._macos import MacBackend
from cowpath._select import use_backend
from cowpath._staging import umask
from tests.fakes.darwin import SF_ARCHIVED, UF_HIDDEN, UF_NODUMP, UF_TRACKED
from tests.fakes.libsystem import (
    LOCKED,
    FakeLibSystem,
    acl_of,
    flags_of,
    names_in,
    set_acl,
    set_flags,
    source_file,
    xattrs_of,
)


def _as(kind: str, path: Path) -> Any:
    return {"str": str(path), "bytes": os.fsencode(path), "path": path}[kind]


# -- a new destination is a clone, shaped into shutil's result ------------------


@pytest.mark.parametrize("kind", ["str", "bytes", "path"])
def test_new_file_is_cloned_under_a_private_name_and_then_named(
    fake: FakeLibSystem, tmp_path: Path, kind: str
) -> None:
    src = source_file(tmp_path)
    report = cowpath.CopyReport()
    got = cowpath.copyfile(_as(kind, src), _as(kind, tmp_path / "dst"), report=report)
    assert got == _as(kind, tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert (report.files_cloned, report.bytes_cloned, report.files_copied) == (1, 70_000, 0)
    [(_, _, dirfd, name, flags)] = fake.named("fclonefileat")
    assert dirfd == AT_FDCWD
    assert flags == CLONE_NOFOLLOW | CLONE_NOOWNERCOPY
    staged = Path(os.fsdecode(name))
    assert staged.parent == tmp_path
    assert staged.name.startswith(".dst.")
    assert staged.name.endswith(".cowpath")
    assert names_in(tmp_path) == {"src", "dst"}
    assert not fake.named("fcopyfile")


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (cowpath.copyfile, lambda src_mode: 0o666 & ~umask()),
        (cowpath.copy, lambda src_mode: src_mode),
        (cowpath.copy2, lambda src_mode: src_mode),
    ],
)
@pytest.mark.parametrize("src_mode", [0o751, 0o4755, 0o600, 0o444])
def test_mode_is_what_each_shutil_function_gives(
    fake: FakeLibSystem,
    tmp_path: Path,
    function: Callable[..., Any],
    expected: Callable[[int], int],
    src_mode: int,
) -> None:
    src = source_file(tmp_path, mode=src_mode)
    function(src, tmp_path / "dst")
    assert fake.named("fclonefileat")
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == expected(src_mode)


def test_the_mode_is_never_wider_than_source_and_final_on_the_way(
    fake: FakeLibSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_engine, "umask", lambda: 0o077)
    src = source_file(tmp_path, mode=0o644)
    os.setxattr(src, "user.where", b"from")
    cowpath.copyfile(src, tmp_path / "dst")
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == 0o600
    # From the first call on the clone, others could no longer read it.
    assert fake.modes
    assert all(mode & ~0o600 == 0 for mode in fake.modes), [oct(m) for m in fake.modes]


@pytest.mark.parametrize("function", [cowpath.copyfile, cowpath.copy, cowpath.copy2])
def test_no_extended_attribute_survives(
    fake: FakeLibSystem, tmp_path: Path, function: Callable[..., Any]
) -> None:
    # shutil copies none on macOS (CPython has no os.listxattr there); the clone carries them all.
    src = source_file(tmp_path)
    os.setxattr(src, "user.com.apple.quarantine", b"0081;5f;Safari;")
    os.setxattr(src, "user.com.apple.metadata:kMDItemWhereFroms", b"bplist")
    function(src, tmp_path / "dst")
    assert fake.named("fclonefileat")
    assert xattrs_of(tmp_path / "dst") == {}
    assert set(xattrs_of(src)) == {"user.com.apple.quarantine", "user.com.apple.metadata:kMDItemWhereFroms"}


@pytest.mark.parametrize("carry_times", [True, False])
def test_copy2_copies_times_and_the_others_get_fresh_ones(
    fake: FakeLibSystem, tmp_path: Path, carry_times: bool
) -> None:
    fake.carry_times = carry_times
    src = source_file(tmp_path)
    old = (1_000_000_000_123_456_789, 1_100_000_000_987_654_321)
    os.utime(src, ns=old)
    started = time.time_ns() - 2_000_000_000
    cowpath.copy2(src, tmp_path / "two")
    cowpath.copyfile(src, tmp_path / "file")
    cowpath.copy(src, tmp_path / "plain")
    assert len(fake.named("fclonefileat")) == 3
    st = os.stat(tmp_path / "two")
    assert (st.st_atime_ns, st.st_mtime_ns) == old
    for name in ("file", "plain"):
        st = os.stat(tmp_path / name)
        assert st.st_mtime_ns >= started, name
        assert st.st_atime_ns >= started, name


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (cowpath.copyfile, lambda flags: flags & UF_COMPRESSED),
        (cowpath.copy, lambda flags: flags & UF_COMPRESSED),
        (cowpath.copy2, lambda flags: flags),
    ],
)
@pytest.mark.parametrize("flags", [UF_HIDDEN | UF_NODUMP, UF_TRACKED, UF_COMPRESSED | UF_HIDDEN, 0])
def test_flags_are_shutils_and_compression_stays(
    fake: FakeLibSystem,
    tmp_path: Path,
    function: Callable[..., Any],
    expected: Callable[[int], int],
    flags: int,
) -> None:
    src = source_file(tmp_path)
    set_flags(src, flags)
    function(src, tmp_path / "dst")
    assert fake.named("fclonefileat")
    assert flags_of(tmp_path / "dst") == expected(flags)
    # UF_COMPRESSED is never cleared: that would expose an empty data fork.
    assert all(call[2] & UF_COMPRESSED == flags & UF_COMPRESSED for call in fake.named("fchflags"))


def test_locking_flags_are_cleared_before_anything_else(fake: FakeLibSystem, tmp_path: Path) -> None:
    # An immutable clone refuses attribute removal (and chmod, utime,
    # rename): its flags must be cleared first.
    src = source_file(tmp_path)
    os.setxattr(src, "user.com.apple.FinderInfo", b"\0" * 32)
    set_flags(src, UF_IMMUTABLE | UF_HIDDEN)
    report = cowpath.CopyReport()
    cowpath.copy(src, tmp_path / "dst", report=report)
    assert report.files_cloned == 1
    assert flags_of(tmp_path / "dst") == 0
    assert xattrs_of(tmp_path / "dst") == {}
    first = next(
        i for i, call in enumerate(fake.calls) if call[0] in ("fchflags", "flistxattr", "fremovexattr")
    )
    assert fake.calls[first][0] == "fchflags"
    assert not fake.calls[first][2] & LOCKED


def test_a_read_only_clone_gets_only_the_owners_write_bit_to_lose_its_attributes(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    fake.xattrs_need_write = True
    src = source_file(tmp_path, mode=0o444)
    os.setxattr(src, "user.com.apple.lastuseddate#PS", b"12345678")
    report = cowpath.CopyReport()
    cowpath.copy(src, tmp_path / "dst", report=report)
    assert report.files_cloned == 1
    assert xattrs_of(tmp_path / "dst") == {}
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == 0o444
    assert set(fake.modes) == {0o444, 0o644}


def test_a_clone_the_owner_cannot_read_is_opened_all_the_same() -> None:
    # The clone takes the source's mode; a source readable through its
    # "other" bits only makes a clone whose owner, the caller, may not
    # open it. Run as an unprivileged user in a child process, in a
    # directory that user can reach.
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    nobody = 65534
    where = Path(tempfile.mkdtemp(prefix="cowpath-macos-"))
    try:
        try:
            os.setxattr(where, "user.probe", b"1")
        except OSError:
            pytest.skip(f"{where} has no user extended attributes")
        where.chmod(0o777)
        src = source_file(where, mode=0o044)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                os.setgid(nobody)
                os.setuid(nobody)
                report = cowpath.CopyReport()
                with use_backend(MacBackend(FakeLibSystem())):
                    cowpath.copy(src, where / "dst", report=report)
                code = 0 if report.files_cloned == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (where / "dst").read_bytes() == src.read_bytes()
        assert stat.S_IMODE(os.stat(where / "dst").st_mode) == 0o044
        assert os.stat(where / "dst").st_uid == nobody
        assert names_in(where) == {"src", "dst"}
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_copy2_of_a_locked_file_leaves_the_flags_to_copystat_after_naming(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    # A file that is immutable before it has its name could never be named:
    # the engine leaves the metadata to shutil.copystat by path, which sets
    # the flags last, as shutil does.
    src = source_file(tmp_path, mode=0o640)
    os.utime(src, ns=(5_000_000_000, 6_000_000_000))
    set_flags(src, UF_APPEND | UF_HIDDEN)
    backend = _select.backend()
    job = FileJob(str(src), str(tmp_path / "dst"), "always", Metadata.STAT)
    transfer(backend, job)
    assert job.by_path
    assert flags_of(tmp_path / "dst") & ~LOCKED == UF_HIDDEN
    assert flags_of(tmp_path / "dst") == UF_APPEND | UF_HIDDEN
    assert stat.S_IMODE(os.stat(tmp_path / "dst").st_mode) == 0o640
    assert os.stat(tmp_path / "dst").st_mtime_ns == 6_000_000_000


@pytest.mark.parametrize("flags", [SF_ARCHIVED, 0x00020000])  # SF_ARCHIVED, SF_IMMUTABLE
def test_a_source_with_system_flags_is_copied(fake: FakeLibSystem, tmp_path: Path, flags: int) -> None:
    # Only the superuser may clear system flags, and an SF_IMMUTABLE clone
    # could not even be removed again: such a source is never cloned.
    src = source_file(tmp_path)
    set_flags(src, flags)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, tmp_path / "dst", report=report)
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert not fake.named("fclonefileat")
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        cowpath.reflink(src, tmp_path / "dst2")
    assert info.value.errno == errno.EPERM


def test_a_restricted_source_clones_for_copy_but_not_for_copy2(fake: FakeLibSystem, tmp_path: Path) -> None:
    # The kernel does not give a clone SF_RESTRICTED; copyfile and copy want
    # no flags anyway, but copy2 must try to set it as shutil.copystat does.
    src = source_file(tmp_path)
    set_flags(src, SF_RESTRICTED)
    report = cowpath.CopyReport()
    cowpath.copy(src, tmp_path / "one", report=report)
    assert report.files_cloned == 1
    assert flags_of(tmp_path / "one") == 0
    fake.superuser = True  # even where the flag could be set, copy2 copies, as shutil would try it
    cowpath.copy2(src, tmp_path / "two", report=report)
    assert (report.files_cloned, report.files_copied) == (1, 1)


def test_the_clone_belongs_to_the_caller(fake: FakeLibSystem, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving the source to another owner needs root")
    src = source_file(tmp_path)
    os.chown(src, 12345, 12345)
    cowpath.copy2(src, tmp_path / "dst")
    assert fake.named("fclonefileat")
    st = os.stat(tmp_path / "dst")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_a_source_with_an_acl_is_copied(fake: FakeLibSystem, tmp_path: Path) -> None:
    # A clone may carry the source's ACL (before macOS 12.6), which no
    # shutil function copies; without one, a clone has what a new file gets.
    fake.clone_copies_acl = True
    src = source_file(tmp_path)
    set_acl(src, b"user:alice allow read")
    report = cowpath.CopyReport()
    cowpath.copy(src, tmp_path / "dst", report=report)
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert not fake.named("fclonefileat")
    assert acl_of(tmp_path / "dst") is None
    with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
        cowpath.copyfile(src, tmp_path / "dst2", reflink="always")
    assert info.value.errno == errno.ENOTSUP
    assert (info.value.filename, info.value.filename2) == (str(src), str(tmp_path / "dst2"))


def test_a_planted_symlink_at_the_private_name_is_not_followed(fake: FakeLibSystem, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bait = outside / "written-through-the-link"
    planted: list[bytes] = []

    def plant(name: bytes) -> None:
        if not planted:
            planted.append(name)
            os.symlink(bait, name)

    fake.before_clone = plant
    src = source_file(tmp_path)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, tmp_path / "dst", report=report)
    assert report.files_cloned == 1
    assert not bait.exists()
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    names = [call[3] for call in fake.named("fclonefileat")]
    assert len(names) == 2
    assert names[0] != names[1]
    assert os.path.islink(planted[0])


def test_supports_reflink_makes_a_real_probe(fake: FakeLibSystem, tmp_path: Path) -> None:
    cowpath._probe.clear_cache()
    try:
        assert cowpath.supports_reflink(tmp_path) is True
        cowpath._probe.clear_cache()
        fake.errors["fclonefileat"] = [errno.ENOTSUP]
        assert cowpath.supports_reflink(tmp_path) is False
    finally:
        cowpath._probe.clear_cache()
    assert names_in(tmp_path) == set()
