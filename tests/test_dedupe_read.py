"""The read-ahead of ``cowpath dedupe``: what it hands to the comparisons, and when."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cowpath._deduperead import WHOLE_SAMPLE, Prefetch, place
from cowpath._dedupetree import Found
from tests.dedupeutil import pattern, write


def _group(root: Path, name: str, size: int) -> list[Found]:
    data = pattern(size, seed=size)
    return [
        Found(str(p), os.lstat(p)) for p in (write(root / f"{name}1", data), write(root / f"{name}2", data))
    ]


def _as_parts(groups: list[list[Found]]) -> tuple[list[list[Found]], list[Found]]:
    return groups, []


def test_a_part_is_handed_over_once_its_files_are_read_before_the_window_is_done(xfs: Path) -> None:
    groups = [
        _group(xfs, "a", 64 * 1024),
        _group(xfs, "b", 64 * 1024 + 1),
        _group(xfs, "c", WHOLE_SAMPLE + 1),
    ]
    # The reader goes in inode order; XFS may reuse freed inode numbers, so
    # which group is complete first is read from the inodes, not assumed.
    first = min(groups, key=lambda group: max(place(item) for item in group))
    done = max(place(item) for item in first)
    others = [item for group in groups if group is not first for item in group]
    later = min((item for item in others if place(item) > done), key=place)
    handed = threading.Event()

    def wanted(item: Found) -> bool:
        if item is later:
            # The comparisons hold the first part before this file is read.
            assert handed.wait(10), "the first part was not handed over before the next was read"
        return True

    reader = Prefetch([groups], _as_parts, wanted)
    received: list[list[str]] = []
    try:
        for parts, alone, cached in reader.wait(0):
            assert cached
            assert alone == []
            for part in parts:
                received.append(sorted(os.path.basename(os.fsdecode(item.path)) for item in part))
                if part[0] is first[0]:
                    handed.set()
        reader.next()
    finally:
        reader.stop()
    assert sorted(received) == [["a1", "a2"], ["b1", "b2"], ["c1", "c2"]]


def test_an_error_in_the_reader_reaches_the_comparisons(xfs: Path) -> None:
    group = _group(xfs, "a", 4096)

    def wanted(item: Found) -> bool:
        raise RuntimeError("reader failed")

    reader = Prefetch([[group]], _as_parts, wanted)
    try:
        with pytest.raises(RuntimeError, match="reader failed"):
            for _ in reader.wait(0):
                pass
    finally:
        reader.stop()
