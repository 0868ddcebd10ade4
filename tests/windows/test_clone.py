"""Block cloning through the Windows backend, on a fake kernel32 that acts on real files.

The range plan and the stream-path rule run everywhere; the clones run on
Linux through tests/fakes/kernel32.py, and the tests check the real files.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cowpath
from cowpath import _win32 as win32
from cowpath import _winclone as winclone
from cowpath._windows import WindowsBackend
from tests.fakes import copy_data
from tests.fakes.kernel32 import (
    CHECKSUM_TYPE_CRC64,
    GIB,
    KIB,
    ROUNDED,
    FakeKernel32,
    Volume,
    needs_fake,
    round_up,
)
from tests.fsutil import listing, write_file

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
    copy_data(backend, volume / "src", volume / "dst", "always", report)
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
    copy_data(backend, refs / "src", refs / "dst", "always", None)
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
    copy_data(backend, refs / "src", refs / "dst", "always", None)
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
    copy_data(backend, refs / "src", refs / "dst", "always", report)
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
    copy_data(backend, ntfs / "src", ntfs / "dst", "auto", report)
    assert (ntfs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, ntfs / "src", ntfs / "new", "always", None)
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
    copy_data(backend, one / "src", two / "dst", "auto", None)
    assert (two / "dst").read_bytes() == data
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, one / "src", two / "new", "always", None)
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
        copy_data(backend, one / "src", two / "dst", "always", None)
    assert (two / "dst").read_bytes() == before  # given back as it was
    copy_data(backend, one / "src", two / "dst", "auto", None)
    assert (two / "dst").read_bytes() == data


@needs_fake
def test_unusable_kernel32_means_no_clone(tmp_path: Path) -> None:
    # Off Windows the real binding cannot load: auto copies, always says ENOSYS.
    backend = WindowsBackend()
    data = write_file(tmp_path / "src", 100)
    copy_data(backend, tmp_path / "src", tmp_path / "dst", "auto", None)
    assert (tmp_path / "dst").read_bytes() == data
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, tmp_path / "src", tmp_path / "new", "always", None)
    assert caught.value.errno == errno.ENOSYS


# -- streams, sparse files, integrity streams --------------------------------------------------


@needs_fake
@pytest.mark.parametrize(("src_name", "dst_name"), [("src", "dst:stream"), ("src:Zone.Identifier", "dst")])
def test_streams_are_copied_without_any_clone_call(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, src_name: str, dst_name: str
) -> None:
    data = write_file(refs / src_name, 9000)
    report = cowpath.CopyReport()
    copy_data(backend, refs / src_name, refs / dst_name, "auto", report)
    assert (refs / dst_name).read_bytes() == data
    assert report.files_copied == 1
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, refs / src_name, refs / "other:s", "always", None)
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
    copy_data(backend, refs / "src", refs / "dst:s", "auto", None)
    assert listing(refs) == ["dst:s", "src"]


@needs_fake
def test_sparse_source_makes_the_destination_sparse_before_cloning(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    data = write_file(refs / "src", 50_000)
    fake.state_of_path(refs / "src").sparse = True
    copy_data(backend, refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == data
    assert fake.state_of_path(refs / "dst").sparse
    names = fake.names()
    assert names.index("FSCTL_SET_SPARSE") < names.index("FSCTL_DUPLICATE_EXTENTS_TO_FILE")


@needs_fake
def test_plain_source_leaves_the_destination_plain(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    write_file(refs / "src", 50_000)
    copy_data(backend, refs / "src", refs / "dst", "always", None)
    assert "FSCTL_SET_SPARSE" not in fake.names()
    assert not fake.state_of_path(refs / "dst").sparse


@needs_fake
def test_integrity_setting_is_matched_through_a_read_write_handle(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend
) -> None:
    data = write_file(refs / "src", 30_000)
    fake.state_of_path(refs / "src").integrity = CHECKSUM_TYPE_CRC64
    copy_data(backend, refs / "src", refs / "dst", "always", None)
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
    copy_data(backend, dev / "plain", dev / "plain-copy", "always", report)
    assert report.files_cloned == 1
    assert (dev / "plain-copy").read_bytes() == same
    # Different settings that cannot be matched: the refusal is ignored,
    # the clone call refuses the pair, and the data is copied.
    data = write_file(dev / "src", 12_000)
    fake.state_of_path(dev / "src").integrity = CHECKSUM_TYPE_CRC64
    report = cowpath.CopyReport()
    copy_data(backend, dev / "src", dev / "dst", "auto", report)
    assert (dev / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (0, 1)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        copy_data(backend, dev / "src", dev / "new", "always", None)
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
        copy_data(backend, refs / "src", refs / "dst", "always", None)
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
        copy_data(backend, refs / "src", refs / "dst", "always", None)
    assert (refs / "dst").read_bytes() == old
    changes = {
        "SetEndOfFile",
        "FSCTL_SET_SPARSE",
        "FSCTL_SET_INTEGRITY_INFORMATION",
        "FSCTL_DUPLICATE_EXTENTS_TO_FILE",
    }
    assert not changes & set(fake.names())
