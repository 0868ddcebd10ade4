"""The libSystem binding (cowpath._libsystem) and the Darwin facts it holds.

The constants are the headers', the error tables keep real errors real,
nothing is loaded until a call, and a call is typed and marshalled as the
headers declare it (checked through glibc, which has some of the same
functions). Without libSystem the backend copies.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import cowpath
from cowpath import _libsystem
from cowpath._libsystem import (
    AT_FDCWD,
    CLONE_NOFOLLOW,
    CLONE_NOOWNERCOPY,
    SF_RESTRICTED,
    UF_COMPRESSED,
    UF_DATAVAULT,
    UF_IMMUTABLE,
    LibSystem,
)
from cowpath._macos import MacBackend
from cowpath._select import use_backend
from tests.fakes import darwin
from tests.fakes.darwin import CLONE_ACL, UF_HIDDEN
from tests.fakes.libsystem import (
    names_in,
    source_file,
)

# -- facts: constants, binding, import -------------------------------------------

pytestmark = pytest.mark.skipif(
    not hasattr(os, "setxattr"), reason="the fake keeps its state in Linux xattrs"
)


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
