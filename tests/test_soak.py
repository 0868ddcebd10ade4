"""Soak: hundreds of thousands of clones and copies in one process, on
filesystems that clone (XFS, btrfs) and that do not (ext4, tmpfs), without
leaking descriptors, threads or memory.

Slow (about 90 seconds): run with --run-slow or COWPATH_RUN_SLOW=1. The
run is bounded both in copies and in time; it prints its figures.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import cowpath
from tests.faultutil import SmallFilesystems, leftovers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="/proc/self and loop filesystems"),
]

FILESYSTEMS = ("xfs", "btrfs", "ext4", "tmpfs")
COPIES_PER_FILESYSTEM = 100_000
SECONDS_PER_FILESYSTEM = 20.0
TRACED_COPIES = 20_000


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss() -> int:
    """Resident memory in bytes (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _tree(root: Path) -> Path:
    """200 small files in 10 directories, a symlink and an empty directory."""
    src = root / "tree"
    for d in range(10):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (src / f"d{d}" / f"f{f}").write_bytes(os.urandom(500 + 97 * f))
    (src / "empty").mkdir()
    (src / "link").symlink_to("d0/f0")
    return src


def _round(root: Path, src: Path, report: cowpath.CopyReport, n: int) -> None:
    """One round of every kind of copy; everything it makes is removed again."""
    dst = root / f"copy{n % 2}"
    cowpath.copytree(src, dst, report=report, symlinks=True)
    shutil.rmtree(dst)
    cowpath.copytree(src, dst, report=report, workers=1, reflink="never")
    shutil.rmtree(dst)
    one = src / "d3" / "f7"
    out = root / "files"
    out.mkdir()
    for i in range(50):
        cowpath.copyfile(one, out / f"new{i}", report=report)
        cowpath.copy2(one, out / f"new{i}", report=report)  # onto an existing file
        cowpath.copy(one, out / f"new{i}", report=report, atomic=True)
        cowpath.copyfile(one, out / f"never{i}", report=report, reflink="never")
    shutil.rmtree(out)


def test_soak(small: SmallFilesystems, capsys: pytest.CaptureFixture[str]) -> None:
    report = cowpath.CopyReport()
    areas = []
    for kind in FILESYSTEMS:
        root = small.make(kind, 512)
        areas.append((kind, root, _tree(root)))
    # A first round everywhere loads what is loaded once (modules, the
    # umask, the thread pool's code); the measurements start after it.
    for _, root, src in areas:
        _round(root, src, report, 0)
    gc.collect()
    threads, fds, rss = threading.active_count(), _descriptors(), _rss()
    started = time.monotonic()
    per_kind = {}
    for kind, root, src in areas:
        begin, first = time.monotonic(), report.files
        n = 1
        while (
            report.files - first < COPIES_PER_FILESYSTEM and time.monotonic() - begin < SECONDS_PER_FILESYSTEM
        ):
            _round(root, src, report, n)
            n += 1
        per_kind[kind] = (report.files - first, n - 1)
        assert n > 1
        assert leftovers(root) == []
    elapsed = time.monotonic() - started
    gc.collect()
    threads_after, fds_after, rss_after = threading.active_count(), _descriptors(), _rss()

    # Then a shorter run with every allocation traced.
    kind, root, src = areas[0]
    tracemalloc.start()
    try:
        gc.collect()
        traced_before = tracemalloc.get_traced_memory()[0]
        blocks_before = tracemalloc.take_snapshot()
        first = report.files
        n = 0
        while report.files - first < TRACED_COPIES:
            n += 1
            _round(root, src, report, n)
        gc.collect()
        traced_after, traced_peak = tracemalloc.get_traced_memory()
        # Blocks, not bytes: a leak leaves objects behind with each copy,
        # while one large block can come from CPython growing a table of its
        # own once (3.13's interned strings, which pathlib adds to).
        new_blocks = sum(
            diff.count_diff for diff in tracemalloc.take_snapshot().compare_to(blocks_before, "filename")
        )
    finally:
        tracemalloc.stop()

    with capsys.disabled():
        print()
        for kind, (copies, rounds) in per_kind.items():
            print(f"soak {kind}: {copies} files in {rounds} rounds")
        print(
            f"soak: {sum(c for c, _ in per_kind.values())} files "
            f"({report.files_cloned} cloned, {report.files_copied} copied in all) in {elapsed:.1f} s; "
            f"descriptors {fds} -> {fds_after}; threads {threads} -> {threads_after}; "
            f"VmRSS {rss / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB; "
            f"traced over {report.files - first} more: {traced_before / 1024:.0f} -> "
            f"{traced_after / 1024:.0f} KiB (peak {traced_peak / 1024:.0f} KiB), {new_blocks:+d} blocks"
        )
    assert fds_after == fds
    assert threads_after == threads
    assert rss_after - rss < 32 * 2**20
    assert new_blocks < 200, f"{new_blocks} more memory blocks after {report.files - first} copies"
    assert traced_after - traced_before < 4 * 2**20
    assert report.files_cloned > 0
    assert report.files_copied > 0
