"""What each Win32 error of a clone means: a copy instead, or the OSError it is.

The refusals (CLONE_FALLBACK_WINERRORS) copy in "auto" and raise
ReflinkNotSupportedError in "always"; the real failures raise with both file
names in every mode; and no failure leaves a partial destination.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

import cowpath
from cowpath import _win32 as win32
from cowpath import _winclone as winclone
from cowpath._windows import WindowsBackend
from tests.fakes import copy_data
from tests.fakes.kernel32 import FakeKernel32, needs_fake
from tests.fsutil import listing, write_file

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
    copy_data(backend, refs / "src", refs / "dst", "auto", report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)

    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", code)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, refs / "src", refs / "new", "always", None)
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
        copy_data(backend, refs / "src", refs / "dst", mode, None)  # type: ignore[arg-type]
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
        copy_data(backend, refs / "src", refs / "dst", "auto", None)
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
        copy_data(backend, refs / "src", refs / "dst", mode, None)  # type: ignore[arg-type]
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
    copy_data(backend, refs / "src", refs / "dst", "auto", report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    fake.inject("FSCTL_DUPLICATE_EXTENTS_TO_FILE", win32.ERROR_BLOCK_TOO_MANY_REFERENCES, nth=2)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, refs / "src", refs / "new", "always", None)
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
        copy_data(backend, refs / "src", refs / "dst", mode, None, atomic=True)  # type: ignore[arg-type]
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
        copy_data(backend, refs / "src", refs / "dst", "auto", None)
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
            copy_data(backend, refs / "src", refs / "dst", "always", None)
        assert not isinstance(caught.value, cowpath.ReflinkNotSupportedError)
        return
    with pytest.raises(cowpath.ReflinkNotSupportedError):
        copy_data(backend, refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == old  # extended for the clone, cut back
    assert not fake.state_of_path(refs / "dst").sparse  # the sparse flag taken back too
