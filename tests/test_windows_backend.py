"""The Windows backend, run on Linux through a fake kernel32 that acts on real files.

The fake is tests/fakes/kernel32.py; the real backend copies real temporary
files through it, and the tests check the files.

Tests that need the fake run on Linux (it uses ``/proc/self/fd`` and
``fcntl``); the pure ones (structure layout, the range plan, the error
mapping, stream names) run everywhere, on Windows against CPython's own
error mapping.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cowpath
import cowpath._probe
from cowpath import _staging
from cowpath import _win32 as win32
from cowpath import _winclone as winclone
from cowpath import _windows as win
from cowpath._api import META_MODE, META_NONE, META_STAT
from cowpath._select import use_backend
from cowpath._windows import WindowsBackend
from tests.fakes.kernel32 import (
    CHECKSUM_TYPE_CRC64,
    GIB,
    KIB,
    ROUNDED,
    FakeCopyFile2,
    FakeKernel32,
    Volume,
    needs_fake,
    round_up,
)
from tests.fsutil import listing, write_file

FILE_ATTRIBUTE_HIDDEN = 0x2


# -- structures and codes (everywhere) ------------------------------------------------

pointer_64 = pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="layouts of 64-bit Windows")


class FileStreamInfoHeader(ctypes.Structure):
    """The fixed part of FILE_STREAM_INFO; StreamName (WCHAR[]) follows it.

    The backend reads it with a struct format; this is the layout that
    format must match.
    """

    _fields_ = (
        ("NextEntryOffset", ctypes.c_uint32),
        ("StreamNameLength", ctypes.c_uint32),  # in bytes
        ("StreamSize", ctypes.c_int64),
        ("StreamAllocationSize", ctypes.c_int64),
    )


@pointer_64
@pytest.mark.parametrize(
    ("structure", "size", "offsets"),
    [
        (
            win32.DuplicateExtentsData,
            32,
            {"FileHandle": 0, "SourceFileOffset": 8, "TargetFileOffset": 16, "ByteCount": 24},
        ),
        (
            win32.GetIntegrityInformationBuffer,
            16,
            {
                "ChecksumAlgorithm": 0,
                "Reserved": 2,
                "Flags": 4,
                "ChecksumChunkSizeInBytes": 8,
                "ClusterSizeInBytes": 12,
            },
        ),
        (win32.SetIntegrityInformationBuffer, 8, {"ChecksumAlgorithm": 0, "Reserved": 2, "Flags": 4}),
        (win32.FileSetSparseBuffer, 1, {"SetSparse": 0}),
        (win32.FileEndOfFileInfo, 8, {"EndOfFile": 0}),
        (win32.FileAttributeTagInfo, 8, {"FileAttributes": 0, "ReparseTag": 4}),
        (
            FileStreamInfoHeader,
            24,
            {"NextEntryOffset": 0, "StreamNameLength": 4, "StreamSize": 8, "StreamAllocationSize": 16},
        ),
    ],
)
def test_structure_layout(structure: type[ctypes.Structure], size: int, offsets: dict[str, int]) -> None:
    # Sizes and offsets of winioctl.h/winbase.h on 64-bit Windows.
    assert ctypes.sizeof(structure) == size
    assert {name: getattr(structure, name).offset for name in offsets} == offsets


@pointer_64
def test_duplicate_extents_bytes() -> None:
    data = win32.DuplicateExtentsData(0x1234, 4096, 8192, 65536)
    assert bytes(data) == struct.pack("<Qqqq", 0x1234, 4096, 8192, 65536)
    # The stream-info parser reads the same header the structure describes.
    assert win._STREAM_HEADER.size == ctypes.sizeof(FileStreamInfoHeader)


def _ctl_code(function: int, access: int) -> int:
    # CTL_CODE(FILE_DEVICE_FILE_SYSTEM, function, METHOD_BUFFERED, access)
    return (0x9 << 16) | (access << 14) | (function << 2)


def test_fsctl_codes_are_winioctl_definitions() -> None:
    any_access, read, write = 0, 1, 2
    assert _ctl_code(49, any_access) == win32.FSCTL_SET_SPARSE  # FILE_SPECIAL_ACCESS
    assert _ctl_code(159, any_access) == win32.FSCTL_GET_INTEGRITY_INFORMATION
    assert _ctl_code(160, read | write) == win32.FSCTL_SET_INTEGRITY_INFORMATION
    assert _ctl_code(209, write) == win32.FSCTL_DUPLICATE_EXTENTS_TO_FILE


# -- the range plan --------------------------------------------------------------------


def _largest_step(cluster: int, limit: int = ROUNDED) -> int:
    return (limit - 1) // cluster * cluster


@settings(max_examples=500, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 64 * KIB),
        st.integers(0, 20 * 1024 * GIB),
        st.sampled_from([ROUNDED - 1, ROUNDED, ROUNDED + 1, 2 * ROUNDED, 3 * ROUNDED - 4096]),
    ),
    cluster=st.sampled_from([512, 4096, 16 * KIB, 64 * KIB, 2 * 1024 * KIB]),
)
def test_clone_ranges_cover_the_file_in_aligned_calls_below_4_gib(size: int, cluster: int) -> None:
    ranges = winclone.clone_ranges(size, cluster)
    end = round_up(size, cluster)
    position = 0
    for offset, length in ranges:
        assert offset == position  # contiguous, in order, from 0
        assert offset % cluster == 0
        assert length % cluster == 0  # the last one too: it runs to the cluster past end of file
        assert 0 < length < ROUNDED
        position += length
    assert position == end
    assert end - size < cluster
    # As few calls as the rule allows.
    assert len(ranges) == -(-end // _largest_step(cluster))


def test_clone_ranges_examples() -> None:
    assert winclone.clone_ranges(0, 4096) == []
    assert winclone.clone_ranges(1, 4096) == [(0, 4096)]
    assert winclone.clone_ranges(4096, 65536) == [(0, 65536)]
    assert winclone.clone_ranges(ROUNDED, 4096) == [(0, ROUNDED - 4096), (ROUNDED - 4096, 4096)]
    assert winclone.clone_ranges(10 * 4096, 4096, limit=3 * 4096 + 1) == [
        (0, 3 * 4096),
        (3 * 4096, 3 * 4096),
        (6 * 4096, 3 * 4096),
        (9 * 4096, 4096),
    ]
    for bad in (0, 3000, 4097):
        with pytest.raises(ValueError):
            winclone.clone_ranges(1, bad)


# -- errors (everywhere) -----------------------------------------------------------------

# What CPython raises on Windows for each code (PC/errmap.h): the class and errno.
CPYTHON_ERRORS = {
    win32.ERROR_ACCESS_DENIED: (PermissionError, errno.EACCES),
    win32.ERROR_SHARING_VIOLATION: (PermissionError, errno.EACCES),
    win32.ERROR_WRITE_PROTECT: (PermissionError, errno.EACCES),
    win32.ERROR_DISK_FULL: (OSError, errno.ENOSPC),
    win32.ERROR_HANDLE_DISK_FULL: (OSError, errno.EINVAL),
    win32.ERROR_NOT_SAME_DEVICE: (OSError, errno.EXDEV),
    win32.ERROR_INVALID_HANDLE: (OSError, errno.EBADF),
    win32.ERROR_NOT_ENOUGH_MEMORY: (OSError, errno.ENOMEM),
    win32.ERROR_FILE_NOT_FOUND: (FileNotFoundError, errno.ENOENT),
    win32.ERROR_FILE_EXISTS: (FileExistsError, errno.EEXIST),
    win32.ERROR_NOT_SUPPORTED: (OSError, errno.EINVAL),
    win32.ERROR_IO_DEVICE: (OSError, errno.EINVAL),
}


@pytest.mark.parametrize("code", sorted(CPYTHON_ERRORS))
def test_win_error_is_cpythons_oserror_with_both_names(code: int) -> None:
    kind, number = CPYTHON_ERRORS[code]
    exc = win32.win_error(code, Path("src.bin"), "dst.bin")
    assert type(exc) is kind
    assert exc.errno == number
    assert exc.winerror == code  # type: ignore[attr-defined]
    assert (exc.filename, exc.filename2) == ("src.bin", "dst.bin")


# Errors that are real failures: raised as the OSError they are, with both
# file names, in every mode (the backend raises anything outside
# CLONE_FALLBACK_WINERRORS; these are the ones it must).
CLONE_FATAL_WINERRORS = frozenset(
    {
        # STATUS_DISK_FULL and friends: no room even for the new references
        # and metadata; a copy needs more room still.
        win32.ERROR_DISK_FULL,
        win32.ERROR_HANDLE_DISK_FULL,
        win32.ERROR_DISK_QUOTA_EXCEEDED,  # the owner's quota is used up: the same for a copy
        # The handles lack the access the FSCTL needs, or a filter (antivirus,
        # EDR, Controlled Folder Access) refuses writes: a copy's writes would
        # be refused too, and the user must hear why.
        win32.ERROR_ACCESS_DENIED,
        win32.ERROR_WRITE_PROTECT,  # STATUS_MEDIA_WRITE_PROTECTED: a read-only volume
        win32.ERROR_NO_SYSTEM_RESOURCES,  # STATUS_INSUFFICIENT_RESOURCES: kernel pool exhausted
        win32.ERROR_NOT_ENOUGH_MEMORY,
        # The medium or an integrity-stream checksum failed: as GNU coreutils
        # found for EIO, copying after such an error risks writing bad data.
        win32.ERROR_IO_DEVICE,
        win32.ERROR_CRC,
        win32.ERROR_DATA_CHECKSUM_ERROR,
        # Another process holds the file or a byte range of it; a copy meets the same lock.
        win32.ERROR_SHARING_VIOLATION,
        win32.ERROR_LOCK_VIOLATION,
        # The target is mapped into memory: its size cannot change for a copy either.
        win32.ERROR_USER_MAPPED_FILE,
    }
)


def test_error_sets_are_disjoint_and_name_the_documented_codes() -> None:
    assert not winclone.CLONE_FALLBACK_WINERRORS & CLONE_FATAL_WINERRORS
    assert {
        win32.ERROR_INVALID_FUNCTION,
        win32.ERROR_NOT_SUPPORTED,
        win32.ERROR_NOT_SAME_DEVICE,
        win32.ERROR_BLOCK_TOO_MANY_REFERENCES,
    } <= winclone.CLONE_FALLBACK_WINERRORS
    assert {
        win32.ERROR_DISK_FULL,
        win32.ERROR_HANDLE_DISK_FULL,
        win32.ERROR_ACCESS_DENIED,
    } <= CLONE_FATAL_WINERRORS


@pytest.mark.parametrize(
    ("path", "stream"),
    [
        ("file.txt", False),
        ("file.txt:Zone.Identifier", True),
        ("file.txt::$DATA", True),
        ("C:\\dir\\file.txt", False),
        ("C:\\dir\\file.txt:stream", True),
        ("C:file.txt", False),  # drive-relative, not a stream
        ("a:b", False),  # drive A:
        ("ab:c", True),
        ("\\\\?\\C:\\dir\\file", False),
        ("\\\\?\\C:\\dir\\file:s", True),
        ("\\\\server\\share\\file", False),
        ("\\\\server\\share\\file:s", True),
        ("//server/share/dir/file:s", True),
        (b"C:\\dir\\f:s", True),
        (b"C:\\dir\\f", False),
        (Path("dir") / "f", False),
    ],
)
def test_stream_paths(path: str | bytes | Path, stream: bool) -> None:
    assert winclone.is_stream_path(path) is stream


# -- cloning through the fake ----------------------------------------------------------------


@needs_fake
@pytest.mark.parametrize("cluster", [4096, 65536])
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 65537, 300_001])
def test_new_destination_is_cloned(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend, cluster: int, size: int
) -> None:
    volume = fake.volume(tmp_path / "v", Volume(serial=0xBEEF, cluster=cluster))
    data = write_file(volume / "src", size)
    report = cowpath.CopyReport()
    backend.copy_data(volume / "src", volume / "dst", "always", report)
    assert (volume / "dst").read_bytes() == data
    assert (report.files_cloned, report.bytes_cloned, report.files_copied) == (1, size, 0)
    duplicates = fake.duplicates()
    assert len(duplicates) == (1 if size else 0)
    for _, src_offset, dst_offset, count in duplicates:
        assert (src_offset, dst_offset, count) == (0, 0, round_up(size, cluster))
    if size:
        # Sized first: end of file set before the clone call.
        names = fake.names()
        assert names.index("SetEndOfFile") < names.index("FSCTL_DUPLICATE_EXTENTS_TO_FILE")
    assert listing(volume) == ["dst", "src"]


@needs_fake
def test_the_source_handle_goes_in_the_structure(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    write_file(refs / "src", 10_000)
    backend.copy_data(refs / "src", refs / "dst", "always", None)
    ((source, _, _, _),) = fake.duplicates()
    call = next(call for call in fake.calls if call.name == "FSCTL_DUPLICATE_EXTENTS_TO_FILE")
    # The FSCTL goes to the destination's handle and names the source's.
    assert source != call.handle
    assert source in fake.handles
    assert call.handle in fake.handles


@needs_fake
def test_large_file_is_cloned_in_calls_below_the_limit(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    # The real limit is 4 GiB; a lower one gives the same plan on a small file.
    backend.clone_limit = 3 * 4096 + 1
    data = write_file(refs / "src", 10 * 4096 + 5)
    backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == data
    duplicates = fake.duplicates()
    assert [(offset, count) for _, offset, _, count in duplicates] == [
        (0, 3 * 4096),
        (3 * 4096, 3 * 4096),
        (6 * 4096, 3 * 4096),
        (9 * 4096, 2 * 4096),
    ]


@needs_fake
@pytest.mark.parametrize(("old_size", "size"), [(100, 10_000), (50_000, 10_000), (8192, 8192), (9000, 5000)])
def test_existing_destination_is_rewritten_in_place(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, old_size: int, size: int
) -> None:
    data = write_file(refs / "src", size)
    write_file(refs / "dst", old_size, seed=99)
    (refs / "link").unlink(missing_ok=True)
    os.link(refs / "dst", refs / "link")
    inode = os.stat(refs / "dst").st_ino
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "always", report)
    assert (refs / "dst").read_bytes() == data
    assert os.stat(refs / "dst").st_ino == inode
    assert (refs / "link").read_bytes() == data
    assert report.files_cloned == 1
    # Never shortened before the clone, so that a refusal finds the old data
    # whole; cut to the source's size after it.
    names = fake.names()
    last_clone = len(names) - 1 - names[::-1].index("FSCTL_DUPLICATE_EXTENTS_TO_FILE")
    ends = [(index, call.detail[0]) for index, call in enumerate(fake.calls) if call.name == "SetEndOfFile"]
    assert all(end >= old_size for index, end in ends if index < last_clone)
    assert all(end == size for index, end in ends if index > last_clone)


@needs_fake
def test_ntfs_volume_copies_and_always_raises(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    ntfs = fake.volume(tmp_path / "ntfs", Volume(serial=0x1, filesystem="NTFS", clones=False))
    data = write_file(ntfs / "src", 5000)
    report = cowpath.CopyReport()
    backend.copy_data(ntfs / "src", ntfs / "dst", "auto", report)
    assert (ntfs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(ntfs / "src", ntfs / "new", "always", None)
    assert caught.value.errno == errno.EOPNOTSUPP
    assert (caught.value.filename, caught.value.filename2) == (str(ntfs / "src"), str(ntfs / "new"))
    assert not (ntfs / "new").exists()
    # The flag said no: no clone call was tried.
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()


@needs_fake
def test_different_volumes_copy_and_always_raises_exdev(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    one = fake.volume(tmp_path / "one", Volume(serial=0x111))
    two = fake.volume(tmp_path / "two", Volume(serial=0x222))
    data = write_file(one / "src", 9000)
    backend.copy_data(one / "src", two / "dst", "auto", None)
    assert (two / "dst").read_bytes() == data
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(one / "src", two / "new", "always", None)
    assert caught.value.errno == errno.EXDEV
    assert (caught.value.filename, caught.value.filename2) == (str(one / "src"), str(two / "new"))
    assert listing(two) == ["dst"]


@needs_fake
def test_volumes_sharing_a_serial_number_are_refused_by_the_clone_call(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    one = fake.volume(tmp_path / "one", Volume(serial=0x777))
    two = fake.volume(tmp_path / "two", Volume(serial=0x777))
    data = write_file(one / "src", 9000)
    write_file(two / "dst", 3000, seed=3)
    before = (two / "dst").read_bytes()
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        backend.copy_data(one / "src", two / "dst", "always", None)
    assert (two / "dst").read_bytes() == before  # given back as it was
    backend.copy_data(one / "src", two / "dst", "auto", None)
    assert (two / "dst").read_bytes() == data


@needs_fake
def test_unusable_kernel32_means_no_clone(tmp_path: Path) -> None:
    # Off Windows the real binding cannot load: auto copies, always says ENOSYS.
    backend = WindowsBackend()
    data = write_file(tmp_path / "src", 100)
    backend.copy_data(tmp_path / "src", tmp_path / "dst", "auto", None)
    assert (tmp_path / "dst").read_bytes() == data
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(tmp_path / "src", tmp_path / "new", "always", None)
    assert caught.value.errno == errno.ENOSYS


# -- the error mapping through a real copy -------------------------------------------------

FALLBACK_ERRNO = {
    win32.ERROR_INVALID_FUNCTION: errno.EOPNOTSUPP,
    win32.ERROR_NOT_SUPPORTED: errno.EOPNOTSUPP,
    win32.ERROR_INVALID_PARAMETER: errno.EINVAL,
    win32.ERROR_NOT_SAME_DEVICE: errno.EXDEV,
    win32.ERROR_OFFSET_ALIGNMENT_VIOLATION: errno.EINVAL,
    win32.ERROR_BLOCK_TOO_MANY_REFERENCES: errno.EMLINK,
}


def test_every_fallback_code_has_an_errno() -> None:
    assert set(FALLBACK_ERRNO) == winclone.CLONE_FALLBACK_WINERRORS


@needs_fake
@pytest.mark.parametrize("code", sorted(winclone.CLONE_FALLBACK_WINERRORS))
def test_fallback_codes_copy_in_auto_and_raise_in_always(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, code: int
) -> None:
    data = write_file(refs / "src", 20_000)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", code)
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "auto", report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)

    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", code)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(refs / "src", refs / "new", "always", None)
    assert caught.value.errno == FALLBACK_ERRNO[code]
    assert (caught.value.filename, caught.value.filename2) == (str(refs / "src"), str(refs / "new"))
    assert listing(refs) == ["dst", "src"]


@needs_fake
@pytest.mark.parametrize("mode", ["auto", "always"])
@pytest.mark.parametrize("code", sorted(CLONE_FATAL_WINERRORS))
def test_fatal_codes_raise_with_both_names(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, code: int, mode: str
) -> None:
    write_file(refs / "src", 20_000)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", code)
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", mode, None)  # type: ignore[arg-type]
    assert not isinstance(caught.value, cowpath.ReflinkNotSupportedError)
    probe = win32.win_error(code)
    assert type(caught.value) is type(probe)
    assert caught.value.errno == probe.errno
    assert (caught.value.filename, caught.value.filename2) == (str(refs / "src"), str(refs / "dst"))
    assert listing(refs) == ["src"]  # no destination, no staging file


@needs_fake
def test_disk_full_while_sizing_raises(refs: Path, fake: FakeKernel32, backend: WindowsBackend) -> None:
    write_file(refs / "src", 20_000)
    fake.inject("SetEndOfFile", win32.ERROR_DISK_FULL)
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", "auto", None)
    assert caught.value.errno == errno.ENOSPC
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()
    assert listing(refs) == ["src"]


# -- no partial destination ------------------------------------------------------------------


@needs_fake
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_later_chunk_failure_leaves_no_new_destination(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, mode: str
) -> None:
    backend.clone_limit = 2 * 4096 + 1
    write_file(refs / "src", 9 * 4096)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_DISK_FULL, nth=3)
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", mode, None)  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENOSPC
    assert len(fake.duplicates()) == 3  # two ranges were cloned before the failure
    assert listing(refs) == ["src"]


@needs_fake
def test_later_chunk_refusal_of_a_new_file_copies_it_whole(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    backend.clone_limit = 2 * 4096 + 1
    data = write_file(refs / "src", 9 * 4096 + 1)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_BLOCK_TOO_MANY_REFERENCES, nth=2)
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "auto", report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_BLOCK_TOO_MANY_REFERENCES, nth=2)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(refs / "src", refs / "new", "always", None)
    assert caught.value.errno == errno.EMLINK
    assert listing(refs) == ["dst", "src"]


@needs_fake
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_later_chunk_failure_leaves_an_existing_destination_whole_when_atomic(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, mode: str
) -> None:
    backend.clone_limit = 2 * 4096 + 1
    write_file(refs / "src", 9 * 4096)
    old = write_file(refs / "dst", 5 * 4096 + 3, seed=42)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_IO_DEVICE, nth=2)
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", mode, None, atomic=True)  # type: ignore[arg-type]
    assert not isinstance(caught.value, cowpath.ReflinkNotSupportedError)
    assert caught.value.errno == win32.win_error(win32.ERROR_IO_DEVICE).errno
    assert (refs / "dst").read_bytes() == old
    assert listing(refs) == ["dst", "src"]


@needs_fake
def test_later_chunk_failure_in_place_is_raised_not_swallowed(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    # Rewritten in place (as shutil rewrites an existing file), a destination
    # whose old data was partly replaced cannot be given back: the error is
    # raised, in "auto" too, rather than hidden behind a copy.
    backend.clone_limit = 2 * 4096 + 1
    write_file(refs / "src", 9 * 4096)
    write_file(refs / "dst", 9 * 4096, seed=42)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_BLOCK_TOO_MANY_REFERENCES, nth=2)
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", "auto", None)
    assert not isinstance(caught.value, cowpath.ReflinkNotSupportedError)
    assert (caught.value.filename, caught.value.filename2) == (str(refs / "src"), str(refs / "dst"))


@needs_fake
@pytest.mark.parametrize("code", sorted(winclone.CLONE_FALLBACK_WINERRORS))
def test_first_range_refusal_leaves_an_existing_destination_untouched(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, code: int
) -> None:
    write_file(refs / "src", 30_000)
    fake.state_of_path(refs / "src").sparse = True
    old = write_file(refs / "dst", 7_000, seed=5)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", code)
    if code == win32.ERROR_BLOCK_TOO_MANY_REFERENCES:
        # It can come partway through a range: only an empty file is given back.
        with pytest.raises(OSError) as caught:
            backend.copy_data(refs / "src", refs / "dst", "always", None)
        assert not isinstance(caught.value, cowpath.ReflinkNotSupportedError)
        return
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == old  # extended for the clone, cut back
    assert not fake.state_of_path(refs / "dst").sparse  # the sparse flag taken back too


# -- streams, sparse files, integrity streams --------------------------------------------------


@needs_fake
@pytest.mark.parametrize(("src_name", "dst_name"), [("src", "dst:stream"), ("src:Zone.Identifier", "dst")])
def test_streams_are_copied_without_any_clone_call(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, src_name: str, dst_name: str
) -> None:
    data = write_file(refs / src_name, 9000)
    report = cowpath.CopyReport()
    backend.copy_data(refs / src_name, refs / dst_name, "auto", report)
    assert (refs / dst_name).read_bytes() == data
    assert report.files_copied == 1
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(refs / src_name, refs / "other:s", "always", None)
    assert caught.value.errno == errno.EINVAL
    assert (caught.value.filename, caught.value.filename2) == (str(refs / src_name), str(refs / "other:s"))
    assert not (refs / "other:s").exists()
    assert not any(name.startswith(("DeviceIoControl", "FSCTL")) for name in fake.names())


@needs_fake
def test_stream_destination_is_written_where_it_is(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    # Not staged under a private name: "dst:stream" is opened as it is.
    write_file(refs / "src", 100)
    backend.copy_data(refs / "src", refs / "dst:s", "auto", None)
    assert listing(refs) == ["dst:s", "src"]


@needs_fake
def test_sparse_source_makes_the_destination_sparse_before_cloning(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    data = write_file(refs / "src", 50_000)
    fake.state_of_path(refs / "src").sparse = True
    backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == data
    assert fake.state_of_path(refs / "dst").sparse
    names = fake.names()
    assert names.index("FSCTL_SET_SPARSE") < names.index("FSCTL_DUPLICATE_EXTENTS_TO_FILE")


@needs_fake
def test_plain_source_leaves_the_destination_plain(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    write_file(refs / "src", 50_000)
    backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert "FSCTL_SET_SPARSE" not in fake.names()
    assert not fake.state_of_path(refs / "dst").sparse


@needs_fake
def test_integrity_setting_is_matched_through_a_read_write_handle(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    data = write_file(refs / "src", 30_000)
    fake.state_of_path(refs / "src").integrity = CHECKSUM_TYPE_CRC64
    backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == data
    assert fake.state_of_path(refs / "dst").integrity == CHECKSUM_TYPE_CRC64
    (set_call,) = [call for call in fake.calls if call.name == "FSCTL_SET_INTEGRITY_INFORMATION"]
    assert set_call.detail == (CHECKSUM_TYPE_CRC64, 0)
    assert "ReOpenFile" in fake.names()
    # Set while the file is empty, then sized, then cloned.
    names = fake.names()
    assert names.index("FSCTL_SET_INTEGRITY_INFORMATION") < names.index("SetEndOfFile")


@needs_fake
def test_dev_drive_refusing_the_integrity_change_is_harmless(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    dev = fake.volume(tmp_path / "dev", Volume(serial=0xDE7, devdrive=True))
    same = write_file(dev / "plain", 12_000)
    # Same setting on both files: nothing to change, a clone.
    report = cowpath.CopyReport()
    backend.copy_data(dev / "plain", dev / "plain-copy", "always", report)
    assert report.files_cloned == 1
    assert (dev / "plain-copy").read_bytes() == same
    # Different settings that cannot be matched: the refusal is ignored,
    # the clone call refuses the pair, and the data is copied.
    data = write_file(dev / "src", 12_000)
    fake.state_of_path(dev / "src").integrity = CHECKSUM_TYPE_CRC64
    report = cowpath.CopyReport()
    backend.copy_data(dev / "src", dev / "dst", "auto", report)
    assert (dev / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        backend.copy_data(dev / "src", dev / "new", "always", None)
    assert caught.value.errno == errno.EOPNOTSUPP
    assert not (dev / "new").exists()


@needs_fake
def test_refusal_gives_an_empty_destination_its_integrity_setting_back(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    write_file(refs / "src", 9000)
    (refs / "dst").write_bytes(b"")
    fake.state_of_path(refs / "dst").integrity = CHECKSUM_TYPE_CRC64
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_NOT_SUPPORTED)
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == b""
    assert fake.state_of_path(refs / "dst").integrity == CHECKSUM_TYPE_CRC64
    sets = [call.detail for call in fake.calls if call.name == "FSCTL_SET_INTEGRITY_INFORMATION"]
    assert sets == [(0, 0), (CHECKSUM_TYPE_CRC64, 0)]


@needs_fake
def test_integrity_mismatch_with_a_non_empty_destination_is_refused_before_any_change(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    write_file(refs / "src", 30_000)
    fake.state_of_path(refs / "src").integrity = CHECKSUM_TYPE_CRC64
    old = write_file(refs / "dst", 100, seed=1)
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        backend.copy_data(refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == old
    changes = {
        "SetEndOfFile",
        "FSCTL_SET_SPARSE",
        "FSCTL_SET_INTEGRITY_INFORMATION",
        "FSCTL_DUPLICATE_EXTENTS_TO_FILE",
    }
    assert not changes & set(fake.names())


# -- the public functions with the backend chosen for them ------------------------------------


@pytest.fixture
def swapped(monkeypatch: pytest.MonkeyPatch, backend: WindowsBackend) -> Iterator[WindowsBackend]:
    monkeypatch.setattr(win, "_copyfile2_function", lambda: None)  # as on Python 3.10/3.11
    # supports_reflink caches its answers per filesystem: none from another
    # backend may answer here, and none from the fake may outlive the test.
    cowpath._probe.clear_cache()
    with use_backend(backend) as chosen:
        yield chosen
    cowpath._probe.clear_cache()


@needs_fake
@pytest.mark.parametrize(
    "function", [cowpath.copyfile, cowpath.copy, cowpath.copy2, cowpath.reflink], ids=lambda f: f.__name__
)
def test_public_functions_clone(
    refs: Path, fake: FakeKernel32, swapped: WindowsBackend, function: Any
) -> None:
    data = write_file(refs / "src", 70_000)
    report = cowpath.CopyReport()
    function(refs / "src", refs / "dst", report=report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (1, 0)
    assert fake.duplicates()


@needs_fake
def test_copytree_clones_every_file(refs: Path, fake: FakeKernel32, swapped: WindowsBackend) -> None:
    expected = {}
    for i in range(12):
        path = refs / "tree" / f"d{i % 3}" / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[path.relative_to(refs / "tree")] = write_file(path, 1000 * i + 1, seed=i)
    report = cowpath.CopyReport()
    cowpath.copytree(refs / "tree", refs / "copy", report=report)
    assert (report.files_cloned, report.files_copied) == (12, 0)
    for relative, data in expected.items():
        assert (refs / "copy" / relative).read_bytes() == data


@needs_fake
def test_supports_reflink_answers_from_a_real_clone(
    tmp_path: Path, refs: Path, fake: FakeKernel32, swapped: WindowsBackend
) -> None:
    ntfs = fake.volume(tmp_path / "ntfs", Volume(serial=0x2, filesystem="NTFS", clones=False))
    assert cowpath.supports_reflink(refs) is True
    assert fake.duplicates()
    # The answer is cached per pair of st_dev, which the fake volumes share.
    cowpath._probe.clear_cache()
    assert cowpath.supports_reflink(ntfs) is False
    assert listing(refs) == []
    assert listing(ntfs) == []


@pytest.fixture
def copyfile2(monkeypatch: pytest.MonkeyPatch, fake: FakeKernel32) -> FakeCopyFile2:
    function = FakeCopyFile2(fake)
    monkeypatch.setattr(win, "_copyfile2_function", lambda: function)
    monkeypatch.setattr(win, "_windows_build", lambda: 20348)  # Windows Server 2022
    return function


def _build(monkeypatch: pytest.MonkeyPatch, build: int) -> None:
    monkeypatch.setattr(win, "_windows_build", lambda: build)


@needs_fake
@pytest.mark.parametrize("build", [20348, 26100])
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("metadata", [META_NONE, META_MODE])
def test_copyfile_and_copy_never_use_copyfile2(
    refs: Path,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
    fake: FakeKernel32,
    monkeypatch: pytest.MonkeyPatch,
    build: int,
    mode: str,
    metadata: int,
) -> None:
    _build(monkeypatch, build)
    write_file(refs / "src", 5000)
    fake.state_of_path(refs / "src").streams.append(":Zone.Identifier:$DATA")
    backend.copy_data(refs / "src", refs / "dst", mode, None, metadata)  # type: ignore[arg-type]
    assert copyfile2.calls == []
    assert fake.state_of_path(refs / "dst").streams == ["::$DATA"]


@needs_fake
def test_copy2_of_a_plain_file_is_a_clone(
    refs: Path, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    data = write_file(refs / "src", 40_000)
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "auto", report, META_STAT)
    assert (refs / "dst").read_bytes() == data
    assert copyfile2.calls == []
    assert report.files_cloned == 1


@needs_fake
@pytest.mark.parametrize("extra", ["stream", "hidden"])
def test_copy2_of_a_file_with_more_than_data_is_copyfile2(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2, extra: str
) -> None:
    data = write_file(refs / "src", 40_000)
    state = fake.state_of_path(refs / "src")
    if extra == "stream":
        state.streams.append(":Zone.Identifier:$DATA")
    else:
        state.attributes |= FILE_ATTRIBUTE_HIDDEN
    report = cowpath.CopyReport()
    applied = backend.copy_data(refs / "src", refs / "dst", "auto", report, META_STAT)
    assert applied is True  # CopyFile2 set the metadata: the caller must not redo it
    assert (refs / "dst").read_bytes() == data
    ((src, private, flags),) = copyfile2.calls
    assert src == str(refs / "src")
    # Into a private name beside the destination, then named: it appears whole.
    assert os.path.dirname(private) == str(refs)
    assert private != str(refs / "dst")
    assert flags == win.COPY_FILE_ALLOW_DECRYPTED_DESTINATION | win.COPY_FILE_FAIL_IF_EXISTS
    assert listing(refs) == ["dst", "src"]
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()
    # What CopyFile2 carries, the destination has.
    assert fake.state_of_path(refs / "dst").streams == state.streams


@needs_fake
def test_copy2_that_cannot_clone_is_copyfile2(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    ntfs = fake.volume(tmp_path / "ntfs", Volume(serial=0x3, filesystem="NTFS", clones=False))
    data = write_file(ntfs / "src", 4000)
    backend.copy_data(ntfs / "src", ntfs / "dst", "auto", None, META_STAT)
    assert (ntfs / "dst").read_bytes() == data
    assert len(copyfile2.calls) == 1
    assert listing(ntfs) == ["dst", "src"]


@needs_fake
@pytest.mark.parametrize(
    ("build", "delegated"), [(19045, True), (20348, True), (22621, False), (26100, False)]
)
def test_copy2_never_uses_copyfile2_only_where_it_cannot_clone(
    refs: Path,
    fake: FakeKernel32,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
    monkeypatch: pytest.MonkeyPatch,
    build: int,
    delegated: bool,
) -> None:
    _build(monkeypatch, build)
    data = write_file(refs / "src", 4000)
    backend.copy_data(refs / "src", refs / "dst", "never", None, META_STAT)
    assert (refs / "dst").read_bytes() == data
    assert bool(copyfile2.calls) is delegated
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()


@needs_fake
def test_copy2_always_clones_and_never_delegates(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "always", report, META_STAT)
    assert (refs / "dst").read_bytes() == data
    assert copyfile2.calls == []
    assert report.files_cloned == 1


@needs_fake
@pytest.mark.parametrize("atomic", [False, True])
def test_copy2_with_copyfile2_onto_an_existing_file(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2, atomic: bool
) -> None:
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    write_file(refs / "dst", 100, seed=3)
    inode = os.stat(refs / "dst").st_ino
    backend.copy_data(refs / "src", refs / "dst", "auto", None, META_STAT, atomic=atomic)
    assert (refs / "dst").read_bytes() == data
    ((_, target, flags),) = copyfile2.calls
    if atomic:
        # A whole new file renamed over the old one.
        assert target != str(refs / "dst")
        assert flags & win.COPY_FILE_FAIL_IF_EXISTS
        assert os.stat(refs / "dst").st_ino != inode
    else:
        # In place, as shutil.copy2 calls it.
        assert (target, flags) == (str(refs / "dst"), win.COPY_FILE_ALLOW_DECRYPTED_DESTINATION)
    assert listing(refs) == ["dst", "src"]


@needs_fake
def test_copyfile2_access_denied_falls_back_as_shutil_does(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    # shutil.copy2 answers ERROR_ACCESS_DENIED from CopyFile2 with copyfile
    # and copystat; cowpath's copyfile step then clones.
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    copyfile2.fail_with = win32.ERROR_ACCESS_DENIED
    report = cowpath.CopyReport()
    backend.copy_data(refs / "src", refs / "dst", "auto", report, META_STAT)
    assert (refs / "dst").read_bytes() == data
    assert len(copyfile2.calls) == 1
    assert (report.files_cloned, report.files_copied) == (1, 0)
    assert fake.state_of_path(refs / "dst").streams == ["::$DATA"]
    assert listing(refs) == ["dst", "src"]


@needs_fake
def test_copyfile2_failure_raises_with_both_names_and_leaves_nothing(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    copyfile2.fail_with = win32.ERROR_DISK_FULL
    with pytest.raises(OSError) as caught:
        backend.copy_data(refs / "src", refs / "dst", "auto", None, META_STAT)
    assert caught.value.errno == errno.ENOSPC
    assert (caught.value.filename, caught.value.filename2) == (str(refs / "src"), str(refs / "dst"))
    assert listing(refs) == ["src"]


@needs_fake
def test_copytree_with_copyfile2_clones_plain_files(
    refs: Path,
    fake: FakeKernel32,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
) -> None:
    (refs / "tree").mkdir()
    for i in range(4):
        write_file(refs / "tree" / f"f{i}", 5000 + i, seed=i)
    fake.state_of_path(refs / "tree" / "f3").streams.append(":Zone.Identifier:$DATA")
    report = cowpath.CopyReport()
    with use_backend(backend):
        cowpath.copytree(refs / "tree", refs / "copy", report=report)
    assert (report.files_cloned, report.files_copied) == (3, 1)
    assert len(copyfile2.calls) == 1
    assert fake.state_of_path(refs / "copy" / "f3").streams[-1] == ":Zone.Identifier:$DATA"


# -- staging on Windows ---------------------------------------------------------------------


@needs_fake
@pytest.mark.parametrize("appeared", [False, True])
def test_staging_on_windows_closes_then_renames_without_replacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appeared: bool
) -> None:
    monkeypatch.setattr(_staging, "_RENAME_KEEPS", True)
    target = tmp_path / "target"
    staging = _staging.stage(target, unnamed=False)
    assert staging is not None
    fd = staging.fd
    os.write(fd, b"new")
    if appeared:
        target.write_bytes(b"someone else's")
    renamed = []

    def windows_rename(src: Any, dst: Any) -> None:
        # Windows refuses while a descriptor is open on the file, and
        # never replaces an existing file.
        with pytest.raises(OSError):
            os.fstat(fd)
        if os.path.exists(dst):
            raise FileExistsError(errno.EEXIST, "exists", dst)
        renamed.append(dst)
        os.replace(src, dst)

    monkeypatch.setattr(_staging.os, "rename", windows_rename)
    assert staging.commit(replace=False) is (not appeared)
    if appeared:
        assert target.read_bytes() == b"someone else's"
        staging.discard()
    else:
        assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["target"]


# -- import, binding ------------------------------------------------------------------------


def test_import_and_construction_do_nothing() -> None:
    # A fresh interpreter where ctypes.WinDLL exists (a recorder) and the
    # Windows-only modules are missing: importing cowpath (which picks its
    # own backend) and the Windows modules, and making a Windows backend,
    # must load nothing.
    script = textwrap.dedent(
        """
        import ctypes, sys
        loaded = []
        ctypes.WinDLL = lambda *args, **kwargs: loaded.append(args)
        import cowpath, cowpath._windows as win
        import cowpath._win32, cowpath._winclone, cowpath._fsinfo
        backend = win.WindowsBackend()
        assert loaded == [], loaded
        assert win.kernel32.cache_info().currsize == 0
        assert win._windows_build.cache_info().currsize == 0
        print("clean")
        """
    )
    root = Path(cowpath.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert done.stdout.strip() == "clean", done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="the real binding loads on Windows")
def test_the_real_binding_refuses_to_load_off_windows() -> None:
    with pytest.raises(OSError) as caught:
        win32._RealKernel32()
    assert caught.value.errno == errno.ENOSYS


def test_the_backend_binds_kernel32_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loads: list[int] = []
    fake = FakeKernel32()

    def load() -> FakeKernel32:
        loads.append(1)
        return fake

    monkeypatch.setattr(win, "kernel32", load)
    backend = WindowsBackend()
    assert loads == []
    binding = backend._binding()
    assert backend._binding() is binding is fake
    assert loads == [1]


# -- on Windows itself ---------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "win32", reason="the real kernel32")
def test_real_kernel32_reads_the_volume(tmp_path: Path) -> None:
    k32 = win32.kernel32()
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    fds = [os.open(tmp_path / name, os.O_RDONLY) for name in ("a", "b")]
    try:
        clone = winclone._Clone(k32, fds[0], fds[1], 1, 1, "a", "b", winclone.CLONE_LIMIT)
        one, two = clone.volume(clone.src_handle), clone.volume(clone.dst_handle)
        assert one.serial == two.serial
        assert one.filesystem
    finally:
        for fd in fds:
            os.close(fd)
