"""cowpath.dedupe and cowpath.shared_bytes on real btrfs, XFS, ext4 and tmpfs."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import cowpath
from tests.dedupeutil import MIB, SIZES, assert_refused, pattern, record, sparse, write
from tests.faultutil import NOBODY, in_child


def _pair(where: Path, size: int) -> tuple[Path, Path]:
    data = pattern(size)
    return write(where / "a", data), write(where / "b", data)


def _inline(where: Path, size: int) -> bool:
    """btrfs keeps files up to 2 KiB in its metadata: they can never share blocks."""
    return where.parent.name == "mnt-btrfs" and size <= 2048


@pytest.mark.parametrize("size", SIZES)
def test_identical_files_of_every_size_share_all_their_data(cloning_fs: Path, size: int) -> None:
    a, b = _pair(cloning_fs, size)
    before = record(a), record(b)
    report = cowpath.DedupeReport()
    shared = cowpath.dedupe(a, b, report=report)
    expected = 0 if _inline(cloning_fs, size) else size
    assert shared == expected
    assert cowpath.shared_bytes(a, b) == expected
    assert cowpath.shared_bytes(b, a) == expected
    assert (record(a), record(b)) == before
    assert report.files_differing == 0
    assert report.bytes_deduped == expected


def test_empty_files_have_nothing_to_share(cloning_fs: Path) -> None:
    a, b = _pair(cloning_fs, 0)
    report = cowpath.DedupeReport()
    assert cowpath.dedupe(a, b, report=report) == 0
    assert report == cowpath.DedupeReport()


def test_sparse_files_share_their_data_and_keep_their_holes(cloning_fs: Path) -> None:
    a, b = sparse(cloning_fs / "a"), sparse(cloning_fs / "b")
    before = record(b)
    assert cowpath.dedupe(a, b) == 2 * MIB
    assert cowpath.shared_bytes(a, b) == 2 * MIB
    assert record(b) == before
    assert os.stat(b).st_blocks * 512 < 3 * MIB


@pytest.mark.parametrize("where", ["first", "middle", "last", "unsampled"])
def test_files_differing_in_one_byte_are_left_alone(cloning_fs: Path, where: str) -> None:
    size = 16 * MIB + 7
    data = bytearray(pattern(size))
    # "unsampled" is a byte the partial check does not read: the kernel's comparison finds it.
    at = {"first": 0, "middle": size // 2, "last": size - 1, "unsampled": size // 3}[where]
    a = write(cloning_fs / "a", bytes(data))
    data[at] ^= 0xFF
    b = write(cloning_fs / "b", bytes(data))
    before = record(a), record(b)
    report = cowpath.DedupeReport()
    assert cowpath.dedupe(a, b, report=report) == 0
    assert report.files_differing == 1
    assert report.files_deduped == 0
    assert cowpath.shared_bytes(a, b) == 0
    assert (record(a), record(b)) == before


def test_a_longer_file_with_the_same_prefix_is_left_alone(cloning_fs: Path) -> None:
    data = pattern(MIB + 5)
    a, b = write(cloning_fs / "a", data[:MIB]), write(cloning_fs / "b", data)
    report = cowpath.DedupeReport()
    assert cowpath.dedupe(a, b, report=report) == 0
    assert report.files_differing == 1
    assert cowpath.shared_bytes(a, b) == 0


def test_metadata_xattrs_and_hard_links_stay(cloning_fs: Path) -> None:
    a, b = _pair(cloning_fs, MIB + 1)
    os.link(b, cloning_fs / "b-link")
    os.setxattr(b, "user.kept", b"yes")
    os.chown(b, NOBODY, NOBODY)
    os.chmod(b, 0o4751)  # setuid survives: the kernel's remap does not strip it
    os.chmod(a, 0o400)
    os.utime(b, ns=(1_000_000_007, 2_000_000_009))
    before = record(a), record(b), record(cloning_fs / "b-link")
    assert cowpath.dedupe(a, b) == MIB + 1
    assert (record(a), record(b), record(cloning_fs / "b-link")) == before


def test_a_file_with_itself_is_all_shared_and_calls_nothing(cloning_fs: Path) -> None:
    a, _ = _pair(cloning_fs, 8192)
    os.link(a, cloning_fs / "same")
    assert cowpath.dedupe(a, cloning_fs / "same") == 8192


def test_a_clone_is_all_shared_and_a_copy_not_at_all(cloning_fs: Path) -> None:
    a = write(cloning_fs / "a", pattern(MIB))
    cowpath.reflink(a, cloning_fs / "clone")
    cowpath.copyfile(a, cloning_fs / "copy", reflink="never")
    assert cowpath.shared_bytes(a, cloning_fs / "clone") == MIB
    assert cowpath.shared_bytes(a, cloning_fs / "copy") == 0


def test_preallocated_extents_are_never_counted_as_shared(cloning_fs: Path) -> None:
    a, b = cloning_fs / "a", cloning_fs / "b"
    for path in (a, b):
        with open(path, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, MIB)
    cowpath.dedupe(a, b)  # btrfs shares unwritten extents, XFS leaves them alone
    assert cowpath.shared_bytes(a, b) == 0


def test_across_filesystems_dedupe_refuses_and_nothing_is_shared(cross_fs: Path) -> None:
    first, second = cross_fs
    data = pattern(MIB)
    a, b = write(first / "a", data), write(second / "b", data)
    before = record(b)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        cowpath.dedupe(a, b)
    assert caught.value.errno == errno.EXDEV
    assert (caught.value.filename, caught.value.filename2) == (str(a), str(b))
    assert cowpath.shared_bytes(a, b) == 0
    assert record(b) == before


def test_ext4_refuses_clearly_and_changes_nothing(ext4: Path) -> None:
    a, b = _pair(ext4, MIB)
    assert_refused(a, b, errno.EOPNOTSUPP)
    assert cowpath.shared_bytes(a, b) == 0  # ext4 maps its extents: they are simply not shared


def test_tmpfs_cannot_tell_what_is_shared(tmpfs: Path) -> None:
    a, b = _pair(tmpfs, 4096)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        cowpath.shared_bytes(a, b)
    assert caught.value.errno in (errno.EOPNOTSUPP, errno.ENOTTY)


def test_directories_and_missing_files_are_errors_naming_them(cloning_fs: Path) -> None:
    a, _ = _pair(cloning_fs, 10)
    with pytest.raises(IsADirectoryError) as caught:
        cowpath.dedupe(a, cloning_fs)
    assert caught.value.filename == str(cloning_fs)
    with pytest.raises(FileNotFoundError) as missing:
        cowpath.shared_bytes(a, cloning_fs / "nope")
    assert missing.value.filename == str(cloning_fs / "nope")


def _as_nobody(a: Path, b: Path) -> int:
    return cowpath.dedupe(a, b)


def test_an_owner_dedupes_into_its_own_read_only_file_and_not_from_an_unreadable_one(small: object) -> None:
    point = small.make("xfs")  # type: ignore[attr-defined]
    data = pattern(MIB)
    a, b = write(point / "a", data), write(point / "b", data)
    os.chown(b, NOBODY, NOBODY)
    os.chmod(b, 0o444)
    before = record(b)
    assert in_child(_as_nobody, a, b, user=NOBODY) == MIB
    assert record(b) == before
    secret = write(point / "secret", data)
    os.chmod(secret, 0o000)
    with pytest.raises(PermissionError) as caught:
        in_child(_as_nobody, secret, b, user=NOBODY)
    assert caught.value.filename == str(secret)


def test_a_writer_during_dedupe_keeps_exactly_what_it_wrote(cloning_fs: Path) -> None:
    size = 8 * MIB
    data = pattern(size)
    a, b = write(cloning_fs / "a", data), write(cloning_fs / "b", data)
    model = bytearray(data)
    stop = threading.Event()

    def writer() -> None:
        fd = os.open(b, os.O_WRONLY)
        try:
            i = 0
            while not stop.is_set():
                at = (i * 1_234_567) % (size - 100)
                chunk = os.urandom(100)
                os.pwrite(fd, chunk, at)
                model[at : at + 100] = chunk
                i += 1
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(20):
            cowpath.dedupe(a, b)
            write(cloning_fs / "c", bytes(model))  # no effect on b: only a new file to dedupe from
            cowpath.dedupe(cloning_fs / "c", b)
    finally:
        stop.set()
        thread.join()
    assert b.read_bytes() == bytes(model)
    assert a.read_bytes() == data
