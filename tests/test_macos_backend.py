"""The macOS backend, run on Linux against a fake libSystem that acts on real files.

Only the libSystem binding is replaced (``MacBackend(lib=...)``): the fake's
``fclonefileat`` makes a real file next to the destination as the kernel
would (refusing an existing name, copying the data, the source's mode
without setuid/setgid, its extended attributes, its flags and, as the worst
case, its times), its xattr calls act on the file's real Linux ``user.``
attributes, and file flags and ACLs live in attributes of the file itself,
so they go wherever the file goes. Everything else, staging, renames,
chmod, utime, the copy fallback, is the real backend on the real
filesystem, driven through cowpath's public functions.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cowpath
from cowpath import _libsystem, _macos, _select
from cowpath._api import META_NONE, META_STAT
from cowpath._libsystem import (
    AT_FDCWD,
    CLONE_NOFOLLOW,
    CLONE_NOOWNERCOPY,
    SF_RESTRICTED,
    UF_APPEND,
    UF_COMPRESSED,
    UF_DATAVAULT,
    UF_IMMUTABLE,
    LibSystem,
)
from cowpath._macos import MacBackend
from cowpath._select import use_backend
from cowpath._staging import umask
from tests.fakes import darwin
from tests.fakes.darwin import CLONE_ACL, SF_ARCHIVED, UF_HIDDEN, UF_NODUMP, UF_TRACKED
from tests.fakes.libsystem import (
    LOCKED,
    FakeLibSystem,
    acl_of,
    flags_of,
    names_in,
    set_acl,
    set_flags,
    skip_without_user_xattrs,
    source_file,
    xattrs_of,
)

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setxattr"), reason="the fake keeps its state in Linux xattrs"
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeLibSystem]:
    """A fake libSystem under the macOS backend, chosen as cowpath's backend."""
    skip_without_user_xattrs(tmp_path)
    monkeypatch.delenv("COWPATH_REFLINK", raising=False)
    lib = FakeLibSystem()
    with use_backend(MacBackend(lib)):
        yield lib


def _as(kind: str, path: Path) -> Any:
    return {"str": str(path), "bytes": os.fsencode(path), "path": path}[kind]


# -- facts: constants, binding, import -------------------------------------------


def test_constants_are_the_darwin_headers() -> None:
    # <sys/clonefile.h>, <sys/fcntl.h>, <sys/acl.h>, <copyfile.h>
    assert (CLONE_NOFOLLOW, CLONE_NOOWNERCOPY, CLONE_ACL) == (1, 2, 4)
    assert AT_FDCWD == -2
    assert (_libsystem.ACL_TYPE_EXTENDED, _libsystem.ACL_FIRST_ENTRY) == (0x100, 0)
    assert _libsystem.COPYFILE_DATA == 8
    # <sys/stat.h>; CPython's stat module agrees where it has the name
    # (its SF_SETTABLE is the BSD-wide 0xffff0000; Darwin's header says 0x3fff0000).
    assert _libsystem.SF_SETTABLE == 0x3FFF0000
    for name in (
        "UF_NODUMP",
        "UF_IMMUTABLE",
        "UF_APPEND",
        "UF_COMPRESSED",
        "UF_TRACKED",
        "UF_DATAVAULT",
        "UF_HIDDEN",
        "SF_ARCHIVED",
        "SF_IMMUTABLE",
        "SF_APPEND",
        "SF_RESTRICTED",
        "SF_NOUNLINK",
    ):
        # Each is defined once: in cowpath if cowpath uses it, else in the tests.
        [value] = [getattr(module, name) for module in (_libsystem, darwin) if hasattr(module, name)]
        if hasattr(stat, name):
            assert value == getattr(stat, name), name
    assert (UF_IMMUTABLE, UF_COMPRESSED, UF_DATAVAULT, UF_HIDDEN, SF_RESTRICTED) == (
        0x2,
        0x20,
        0x80,
        0x8000,
        0x80000,
    )


def test_error_sets_are_disjoint_and_keep_real_errors_real() -> None:
    fallback, path = _libsystem.CLONE_FALLBACK_ERRNOS, _libsystem.CLONE_PATH_ERRNOS
    assert not fallback & path
    for real in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EEXIST):
        assert real not in fallback | path
    assert {errno.ENOTSUP, errno.EXDEV, errno.EDEADLK} <= fallback


def test_importing_loads_nothing() -> None:
    code = textwrap.dedent(
        """
        import sys
        import cowpath._libsystem as lib
        import cowpath._macos as m
        assert "ctypes" not in sys.modules, "ctypes imported with the modules"
        import ctypes
        def refuse(*args, **kwargs):
            raise AssertionError("a library was loaded")
        ctypes.CDLL = refuse
        backend = m.MacBackend()
        lib.LibSystem()
        assert backend.lib is lib.LIBSYSTEM and lib.LIBSYSTEM._library is None
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_binding_loads_once_on_first_call_with_the_header_types(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    loads: list[tuple[Any, ...]] = []

    class Function:
        restype: Any = None
        argtypes: Any = None

        def __call__(self, *args: Any) -> int:
            return 0

    class Library:
        def __init__(self, path: str, use_errno: bool = False) -> None:
            loads.append((path, use_errno))
            self.functions: dict[str, Function] = {}

        def __getattr__(self, name: str) -> Function:
            return self.functions.setdefault(name, Function())

    monkeypatch.setattr(ctypes, "CDLL", Library)
    lib = LibSystem("/usr/lib/libSystem.B.dylib")
    assert loads == []
    lib.fclonefileat(3, AT_FDCWD, b"x", 3)
    lib.fremovexattr(3, b"com.apple.quarantine")
    lib.fchflags(3, 0)
    assert lib.flistxattr(3) == []
    assert loads == [("/usr/lib/libSystem.B.dylib", True)]
    bound = lib._library.functions
    assert bound["fclonefileat"].argtypes == (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    assert bound["flistxattr"].restype is ctypes.c_ssize_t
    assert bound["flistxattr"].argtypes == (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    assert bound["fremovexattr"].argtypes == (ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    assert bound["fchflags"].argtypes == (ctypes.c_int, ctypes.c_uint32)


def test_binding_marshals_through_a_real_c_library(tmp_path: Path) -> None:
    # glibc has flistxattr and fremovexattr (without the options argument,
    # which the C calling convention lets it ignore), and no fclonefileat.
    lib = LibSystem(None)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    try:
        os.setxattr(path, "user.one", b"1")
        os.setxattr(path, "user." + "n" * 200, b"2")
    except OSError:
        pytest.skip("no user extended attributes here")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert set(lib.flistxattr(fd)) >= {b"user.one", b"user." + b"n" * 200}
        lib.fremovexattr(fd, b"user.one")
        assert b"user.one" not in lib.flistxattr(fd)
        with pytest.raises(OSError) as info:
            lib.fremovexattr(fd, b"user.one")
        assert info.value.errno == errno.ENODATA
        with pytest.raises(OSError) as info:
            lib.fclonefileat(fd, AT_FDCWD, os.fsencode(tmp_path / "clone"), 0)
        assert info.value.errno == errno.ENOSYS
    finally:
        os.close(fd)
    assert not (tmp_path / "clone").exists()


def test_without_libsystem_auto_copies_and_always_says_enosys(tmp_path: Path) -> None:
    src = source_file(tmp_path)
    report = cowpath.CopyReport()
    with use_backend(MacBackend(LibSystem("/nonexistent/libSystem.B.dylib"))):
        cowpath.copy2(src, tmp_path / "dst", report=report)
        assert (tmp_path / "dst").read_bytes() == src.read_bytes()
        assert (report.files_cloned, report.files_copied) == (0, 1)
        with pytest.raises(cowpath.ReflinkNotSupportedError) as info:
            cowpath.reflink(src, tmp_path / "dst2")
    assert info.value.errno == errno.ENOSYS
    assert names_in(tmp_path) == {"src", "dst"}


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
    monkeypatch.setattr(_macos, "umask", lambda: 0o077)
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
    # the backend says it did not apply the metadata, and copy2 calls
    # shutil.copystat by path, which sets the flags last, as shutil does.
    src = source_file(tmp_path, mode=0o640)
    os.utime(src, ns=(5_000_000_000, 6_000_000_000))
    set_flags(src, UF_APPEND | UF_HIDDEN)
    backend = _select.backend()
    applied = backend.copy_data(str(src), str(tmp_path / "dst"), "always", None, META_STAT)
    assert applied is False
    assert not flags_of(tmp_path / "dst") & LOCKED
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


def test_the_real_binding_uses_posix_fcopyfile_with_copyfile_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import posix

    seen: list[tuple[int, int, int]] = []

    def fcopyfile(src_fd: int, dst_fd: int, flags: int) -> None:
        seen.append((src_fd, dst_fd, flags))

    monkeypatch.setattr(posix, "_fcopyfile", fcopyfile, raising=False)
    monkeypatch.delattr(posix, "_COPYFILE_DATA", raising=False)
    LibSystem(None).fcopyfile(5, 6)
    assert seen == [(5, 6, 8)]


# -- trees --------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"a" * 5000, "sub/b.bin": os.urandom(20_000), "sub/deeper/c": b"c"}
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.setxattr(path, "user.com.apple.quarantine", b"q")
        os.utime(path, ns=(3_000_000_000, 4_000_000_000))
    (root / "sub" / "b.bin").chmod(0o751)
    return files


@pytest.mark.parametrize("workers", [1, 4])
def test_copytree_clones_each_file_straight_into_the_private_tree(
    fake: FakeLibSystem, tmp_path: Path, workers: int
) -> None:
    files = _tree(tmp_path / "src")
    report = cowpath.CopyReport()
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", report=report, workers=workers)
    assert (report.files_cloned, report.files_copied) == (3, 0)
    for relative, data in files.items():
        path = tmp_path / "dst" / relative
        assert path.read_bytes() == data
        assert xattrs_of(path) == {}
        assert os.stat(path).st_mtime_ns == 4_000_000_000
    assert stat.S_IMODE(os.stat(tmp_path / "dst" / "sub" / "b.bin").st_mode) == 0o751
    for call in fake.named("fclonefileat"):
        staged = os.fsdecode(call[3])
        assert "/.cowpath-" in staged
        assert not os.path.basename(staged).startswith(".")
    assert names_in(tmp_path / "dst") == {"a.txt", "sub"}


def test_copytree_into_an_existing_directory_stages_each_clone(fake: FakeLibSystem, tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", dirs_exist_ok=True, workers=1)
    for relative, data in files.items():
        assert (tmp_path / "dst" / relative).read_bytes() == data
    for call in fake.named("fclonefileat"):
        assert os.path.basename(os.fsdecode(call[3])).endswith(".cowpath")


def test_direct_clone_onto_an_existing_name_takes_the_general_path(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    src = source_file(tmp_path)
    (tmp_path / "dst").write_bytes(b"there")
    backend = _select.backend()
    assert backend.copy_new_file(str(src), str(tmp_path / "dst"), "auto", META_NONE, direct=True) is None
    assert (tmp_path / "dst").read_bytes() == b"there"


def test_copytree_with_symlinks_never_asks_the_backend_for_a_link(
    fake: FakeLibSystem, tmp_path: Path
) -> None:
    # Symlinks are made above the backend (os.symlink, as shutil does), so
    # the backend never needs CLONE_NOFOLLOW for a source.
    (tmp_path / "src").mkdir()
    target = source_file(tmp_path / "src", "target")
    os.symlink("target", tmp_path / "src" / "link")
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", symlinks=True)
    cowpath.copyfile(tmp_path / "src" / "link", tmp_path / "link-copy", follow_symlinks=False)
    assert os.readlink(tmp_path / "dst" / "link") == "target"
    assert os.readlink(tmp_path / "link-copy") == "target"
    sources = {os.path.basename(os.fsdecode(call[3])) for call in fake.named("fclonefileat")}
    assert sources == {"target"}
    assert (tmp_path / "dst" / "target").read_bytes() == target.read_bytes()


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
