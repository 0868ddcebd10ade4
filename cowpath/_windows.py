"""Windows backend: ReFS block cloning (FSCTL_DUPLICATE_EXTENTS_TO_FILE) to clone.

Copies are made by reading and writing, as shutil makes them on Windows;
copy2 on Python 3.12+ goes to CopyFile2 where that is what keeps its result
equal to shutil.copy2's. Imports cleanly on every OS and does nothing at
import time. The clone itself is :mod:`cowpath._winclone`; the kernel32
binding it goes through, bound on first use, is :mod:`cowpath._win32`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
import struct
import sys
from collections.abc import Callable
from typing import ClassVar, Final

from ._backend import Backend, FileJob, Route, Transfer
from ._common import READ_FLAGS, Metadata, StrOrBytesPath
from ._errors import CannotClone
from ._staging import Staging, private_name
from ._win32 import (
    ERROR_ACCESS_DENIED,
    ERROR_HANDLE_EOF,
    FILE_ATTRIBUTE_ARCHIVE,
    FILE_ATTRIBUTE_INTEGRITY_STREAM,
    FILE_ATTRIBUTE_NORMAL,
    FILE_ATTRIBUTE_READONLY,
    FILE_ATTRIBUTE_SPARSE_FILE,
    FILE_ATTRIBUTE_TAG_INFO_CLASS,
    FILE_STREAM_INFO_CLASS,
    FileAttributeTagInfo,
    Kernel32,
    kernel32,
    win_error,
)
from ._winclone import CLONE_LIMIT, _Clone, is_stream_path

__all__ = ["WindowsBackend"]

# CopyFile2's dwCopyFlags (winbase.h).
COPY_FILE_FAIL_IF_EXISTS: Final = 0x1
COPY_FILE_ALLOW_DECRYPTED_DESTINATION: Final = 0x8

# The first Windows build whose CopyFile2 may clone on its own: Windows 11
# 22H2/23H2 with KB5034848 ("Moment 5"); 24H2 and Windows Server 2025 (26100)
# clone by default. Windows Server 2022 is 20348, Windows 10 is 1904x.
NATIVE_CLONE_BUILD: Final = 22621

# FILE_STREAM_INFO (winbase.h), one entry: NextEntryOffset and
# StreamNameLength (DWORDs, the length in bytes), StreamSize and
# StreamAllocationSize (LARGE_INTEGERs); StreamName (WCHAR[]) follows.
_STREAM_HEADER: Final = struct.Struct("<IIqq")
_MAIN_STREAM: Final = "::$DATA"


def _copyfile2_function() -> Callable[[str, str, int], object] | None:
    """``_winapi.CopyFile2`` where this Python has it (3.12+ on Windows), else None."""
    if sys.platform != "win32":
        return None
    import _winapi

    function: Callable[[str, str, int], object] | None = getattr(_winapi, "CopyFile2", None)
    return function


@functools.cache
def _windows_build() -> int:
    """The build number of the running Windows (0 elsewhere).

    ``platform_version`` is the system's own version, not the one a
    compatibility shim may show the process: what decides how the system's
    CopyFile2 behaves.
    """
    if sys.platform != "win32":
        return 0
    return sys.getwindowsversion().platform_version[2]


# The file attributes that a clone followed by copystat reproduces as
# CopyFile2 does; any other (hidden, system, not indexed, ...) is carried
# by CopyFile2 only. Sparse is the one accepted difference: a clone of a
# sparse file is sparse (ReFS requires it), CopyFile2's copy is not.
_PLAIN_ATTRIBUTES: Final = (
    FILE_ATTRIBUTE_READONLY
    | FILE_ATTRIBUTE_ARCHIVE
    | FILE_ATTRIBUTE_NORMAL
    | FILE_ATTRIBUTE_SPARSE_FILE
    | FILE_ATTRIBUTE_INTEGRITY_STREAM
)


def _remove_private(path: StrOrBytesPath) -> None:
    """Remove a private staging file, also one made read-only by CopyFile2; never raises."""
    try:
        os.unlink(path)
    except PermissionError:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IREAD | stat.S_IWRITE)
            os.unlink(path)
    except OSError:
        pass


# -- the backend --------------------------------------------------------------------


class WindowsBackend(Backend):
    """Block cloning on ReFS and Dev Drive; a read/write copy everywhere else.

    copy2 on Python 3.12+ is delegated to CopyFile2 where that is what
    keeps the result equal to shutil.copy2's (see :meth:`route`).
    """

    name = "windows"

    #: Each clone call covers less than this many bytes.
    clone_limit: ClassVar[int] = CLONE_LIMIT

    def __init__(self, kernel32: Kernel32 | None = None) -> None:
        # None: the real kernel32, bound on the first clone.
        self._kernel32 = kernel32
        self._no_kernel32 = False

    def _binding(self) -> Kernel32:
        if self._kernel32 is None:
            if self._no_kernel32:
                raise CannotClone(errno.ENOSYS, "kernel32 is unavailable")
            try:
                self._kernel32 = kernel32()
            except (OSError, AttributeError) as exc:
                self._no_kernel32 = True
                raise CannotClone(errno.ENOSYS, f"kernel32 is unavailable: {exc}") from None
        return self._kernel32

    # -- the engine's hooks ------------------------------------------------------

    def clone(self, transfer: Transfer) -> None:
        job = transfer.job
        if is_stream_path(job.dst) or is_stream_path(job.src):
            raise CannotClone(errno.EINVAL, "alternate data streams are copied, never cloned")
        if not stat.S_ISREG(transfer.src_st.st_mode):
            raise CannotClone(errno.EINVAL, "only regular files are cloned")
        k32 = self._binding()
        size, dst_size = transfer.src_st.st_size, transfer.dst_size
        _Clone(
            k32, transfer.src_fd, transfer.dst_fd, size, dst_size, job.src, job.dst, self.clone_limit
        ).run()

    def can_stage(self, path: StrOrBytesPath) -> bool:
        # A stream is opened, and created, where it is, as shutil's
        # open(dst, "wb") does; it has no name of its own to stage.
        return not is_stream_path(path)

    def route(self, job: FileJob) -> Route:
        # copyfile and copy never go through CopyFile2: it carries alternate
        # data streams, extended attributes, file attributes and the
        # modification time ("This function preserves extended attributes,
        # OLE structured storage, NTFS file system alternate data streams,
        # and file attributes", CopyFile2 remarks), none of which
        # shutil.copyfile (data only) or shutil.copy (data and the read-only
        # bit) gives a destination.
        #
        # shutil.copy2 on Python 3.12+ *is* _winapi.CopyFile2 (falling back
        # to copyfile + copystat only on ERROR_ACCESS_DENIED), so copy2 goes
        # there too where that keeps both promises, shutil's result and the
        # reflink mode:
        # - "always": never; only FSCTL_DUPLICATE_EXTENTS_TO_FILE proves a
        #   clone (copy2 then carries copystat's metadata, not streams);
        # - "never": only before build 22621, where CopyFile2 cannot clone
        #   (later it may, and _winapi.CopyFile2 cannot pass
        #   COPY_FILE2_V2_DISABLE_BLOCK_CLONING);
        # - "auto": a source with nothing but data, times and the read-only
        #   bit is cloned, as a clone plus copystat then equals CopyFile2's
        #   result (ReFS has no extended attributes); anything else, or a
        #   pair that cannot be cloned, goes to CopyFile2, which Windows 11
        #   24H2 and Server 2025 make a clone on ReFS by themselves.
        # Windows does not say whether CopyFile2 cloned: it counts as a copy.
        if job.metadata is not Metadata.STAT or _copyfile2_function() is None:
            return Route.ENGINE
        if job.mode == "never":
            return Route.NATIVE if _windows_build() < NATIVE_CLONE_BUILD else Route.ENGINE
        if job.mode == "auto":
            return Route.CLONE_THEN_NATIVE if self._plain_source(job.src) else Route.NATIVE
        return Route.ENGINE

    def native_copy(self, job: FileJob, replace: bool) -> bool:
        return self._copy2_with_copyfile2(job.src, job.dst, replace)

    # -- CopyFile2 -----------------------------------------------------------

    def _plain_source(self, src: StrOrBytesPath) -> bool:
        """Does a clone plus copystat give ``src``'s copy exactly as CopyFile2 makes it?

        True for a file without alternate data streams and without
        attributes beyond read-only, archive, sparse and integrity. True as
        well when the file cannot be opened: the clone attempt then reports
        what is wrong, as the engine reports it for every copy.
        """
        if is_stream_path(src):
            return False
        try:
            k32 = self._binding()
            fd = os.open(src, READ_FLAGS)
        except (CannotClone, OSError):
            return True
        try:
            handle = k32.get_osfhandle(fd)
            info = FileAttributeTagInfo()
            ok = k32.GetFileInformationByHandleEx(
                handle, FILE_ATTRIBUTE_TAG_INFO_CLASS, ctypes.byref(info), ctypes.sizeof(info)
            )
            if not ok or info.FileAttributes & ~_PLAIN_ATTRIBUTES:
                return False
            return _stream_names(k32, handle) == [_MAIN_STREAM]
        finally:
            os.close(fd)

    def _copy2_with_copyfile2(self, src: StrOrBytesPath, dst: StrOrBytesPath, atomic: bool) -> bool:
        """copy2 as shutil.copy2 makes it on 3.12+; False if shutil would fall back (or if the
        destination is not a plain file name), leaving the copy to the engine."""
        copyfile2 = _copyfile2_function()
        if copyfile2 is None or os.path.islink(dst):
            # A symlink destination is written through by cowpath, replaced
            # by CopyFile2: the engine keeps cowpath's meaning.
            return False
        try:
            existing = os.stat(dst)
        except FileNotFoundError:
            existing = None
        except (OSError, ValueError):
            return False  # the engine reports it as shutil would
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            return False
        flags = COPY_FILE_ALLOW_DECRYPTED_DESTINATION  # shutil's flags
        try:
            if is_stream_path(dst) or (existing is not None and not atomic):
                # In place, as shutil writes an existing file (or a stream).
                copyfile2(os.fsdecode(src), os.fsdecode(dst), flags)
            else:
                _copyfile2_staged(copyfile2, src, dst, flags, replace=existing is not None)
        except OSError as exc:
            if getattr(exc, "winerror", None) == ERROR_ACCESS_DENIED:
                # shutil.copy2's own fallback (a hidden or read-only
                # destination): copyfile, then copystat.
                return False
            code = getattr(exc, "winerror", None)
            if isinstance(code, int):
                raise win_error(code, src, dst) from None
            raise
        return True


def _copyfile2_staged(
    copyfile2: Callable[[str, str, int], object],
    src: StrOrBytesPath,
    target: StrOrBytesPath,
    flags: int,
    replace: bool,
) -> None:
    """CopyFile2 into a fresh private name beside ``target``, then name it ``target``.

    As every new cowpath destination, it appears only when complete; with
    ``replace`` it replaces an existing ``target`` whole (``atomic``).
    """
    for _ in range(8):
        private = private_name(target)
        try:
            # FAIL_IF_EXISTS: the private name is this call's alone.
            copyfile2(os.fsdecode(src), os.fsdecode(private), flags | COPY_FILE_FAIL_IF_EXISTS)
        except FileExistsError:
            continue
        except BaseException:
            _remove_private(private)
            raise
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free staging name", os.fsdecode(target))
    staging = Staging(-1, target, private)
    try:
        if staging.commit(replace=replace):
            return
    except BaseException:
        _remove_private(private)
        raise
    # The destination appeared meanwhile: write it as shutil would have.
    _remove_private(private)
    copyfile2(os.fsdecode(src), os.fsdecode(target), flags)


def _stream_names(k32: Kernel32, handle: int) -> list[str]:
    """The names of a file's data streams ("::$DATA" is the unnamed one); [""] if unknown."""
    buffer = ctypes.create_string_buffer(64 * 1024)
    if not k32.GetFileInformationByHandleEx(handle, FILE_STREAM_INFO_CLASS, buffer, len(buffer)):
        if k32.last_error() == ERROR_HANDLE_EOF:
            return []  # no data stream at all
        return [""]  # too many streams for the buffer, or no answer: not plain
    names: list[str] = []
    offset = 0
    raw = buffer.raw
    while offset + _STREAM_HEADER.size <= len(raw):
        following, length, _, _ = _STREAM_HEADER.unpack_from(raw, offset)
        start = offset + _STREAM_HEADER.size
        names.append(raw[start : start + length].decode("utf-16-le", "replace"))
        if not following:
            return names
        offset += following
    return [""]  # a malformed list: not plain
