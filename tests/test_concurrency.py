"""Concurrency: many copies at once into one directory, racing copies onto
one name, a tree copied while its files are being replaced, and errors in
threads that must be reported, not swallowed.

Every source has its own fill byte, so a destination that mixes two
versions (or holds a partial one) is seen at once.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import leftovers

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems")

MIB = 1024 * 1024


def _versions(root: Path, count: int, size: int) -> list[Path]:
    """``count`` sources of ``size`` bytes, each all one byte: b"A", b"B", ..."""
    paths = []
    for i in range(count):
        path = root / f"source-{i}"
        path.write_bytes(bytes([65 + i]) * size)
        paths.append(path)
    return paths


def _whole(data: bytes, size: int, count: int) -> bool:
    """One whole version: the right size, one byte throughout, a known one."""
    return len(data) == size and data == data[:1] * size and 65 <= data[0] < 65 + count


def _run_threads(targets: list[Callable[[], Any]]) -> list[BaseException]:
    """Run each target in its own thread, started together; return what they raised."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(target: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2"])
def test_many_threads_copy_into_one_directory(any_fs: Path, function: str) -> None:
    sources = any_fs / "sources"
    sources.mkdir()
    contents = {}
    for i in range(64):
        data = os.urandom(1000 + i * 3001)
        (sources / f"f{i:02d}").write_bytes(data)
        contents[f"f{i:02d}"] = data
    out = any_fs / "out"
    out.mkdir()
    report = cowpath.CopyReport()
    copy = getattr(cowpath, function)

    def worker(start: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(start, 64, 16):
                copy(sources / f"f{i:02d}", out / f"f{i:02d}", report=report)

        return run

    assert _run_threads([worker(k) for k in range(16)]) == []
    assert sorted(os.listdir(out)) == sorted(contents)
    for name, data in contents.items():
        assert (out / name).read_bytes() == data
    assert report.files == 64
    assert leftovers(out) == []


def _copy_after_all_looked(src: str, dst: str, mode: str, atomic: bool, barrier: Any) -> None:
    """In a child: copy, but wait for the other children at the first file
    the copy creates, when it has seen that ``dst`` does not exist."""
    waited = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and not waited and os.fsdecode(args[0]) != src:
            waited.append(True)
            barrier.wait()

    sys.addaudithook(hook)
    cowpath.copyfile(src, dst, reflink=mode, atomic=atomic)  # type: ignore[arg-type]


def _in_children(target: Callable[..., None], sources: list[Path], *args: Any) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(sources))
    children = [context.Process(target=target, args=(str(src), *args, barrier)) for src in sources]
    for child in children:
        child.start()
    for child in children:
        child.join()
    assert [child.exitcode for child in children] == [0] * len(sources)


@pytest.mark.parametrize("atomic", [False, True])
@pytest.mark.parametrize("mode", ["auto", "never"])
def test_copies_onto_a_name_none_found_leave_one_whole_version(any_fs: Path, atomic: bool, mode: str) -> None:
    """Six processes copy six sources onto one name that none of them found:
    each looks, finds nothing, and only then do they all go on. The first
    to finish names its file; the others find the name taken. They must not
    then rewrite that file in place, all at once, each truncating and
    refilling it: that leaves a mix of sources. The name ends up holding
    one of them, whole.
    """
    count, size = 6, 4 * MIB
    sources = _versions(any_fs, count, size)
    for round_number in range(6):
        dst = any_fs / f"dst-{round_number}"
        _in_children(_copy_after_all_looked, sources, str(dst), mode, atomic)
        data = dst.read_bytes()
        assert _whole(data, size, count), f"round {round_number}: {sorted(set(data))} in {len(data)} bytes"
        assert leftovers(any_fs) == []


class _Reader:
    """A thread that reads a file over and over; keeps what was not one whole version."""

    def __init__(self, path: Path, size: int, count: int) -> None:
        self.path, self.size, self.count = path, size, count
        self.reads = 0
        self.bad: list[tuple[int, list[int]]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                continue
            self.reads += 1
            if not _whole(data, self.size, self.count) and data != b"F" * self.size:
                self.bad.append((len(data), sorted(set(data))))

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def _copy_in_child(src: str, dst: str, mode: str, barrier: Any) -> None:
    barrier.wait()
    cowpath.copyfile(src, dst, reflink=mode, atomic=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("runner", ["threads", "processes"])
@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("mode", ["auto", "never"])
def test_racing_atomic_copies_leave_one_whole_version(
    any_fs: Path, runner: str, existing: bool, mode: str
) -> None:
    """Atomic copies of six sources onto one name, started together, onto a
    new name or an existing file: the name always holds one whole version,
    for a reader during the race as well as at the end.

    (Without ``atomic``, copies that find the file already there rewrite it
    in place, as shutil does, and several at once can mix; that is what
    ``atomic`` is for.)
    """
    count, size = 6, 2 * MIB
    sources = _versions(any_fs, count, size)
    for round_number in range(4):
        dst = any_fs / f"dst-{round_number}"
        if existing:
            dst.write_bytes(b"F" * size)
        reader = _Reader(dst, size, count)
        try:
            if runner == "threads":

                def make(src: Path, dst: Path = dst) -> Callable[[], None]:
                    return lambda: cowpath.copyfile(src, dst, reflink=mode, atomic=True)  # type: ignore[arg-type]

                assert _run_threads([make(src) for src in sources]) == []
            else:
                _in_children(_copy_in_child, sources, str(dst), mode)
        finally:
            reader.stop()
        assert _whole(dst.read_bytes(), size, count)
        assert reader.bad == [], "a reader saw a partial or mixed file"
        assert leftovers(any_fs) == []
