"""copytree's engine: shutil's results and error order with any number of threads."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

import cowpath
from tests.fsutil import shared_bytes
from tests.parity import outcome, tree_state

WORKERS = [1, 2, 8]


def _make_tree(root: Path, dirs: int = 6, files: int = 12) -> None:
    for d in range(dirs):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(files):
            size = (d * 7919 + f * 104729) % 70000
            (sub / f"f{f}.bin").write_bytes(os.urandom(size))
            (root / f"d{d}" / f"top{f}.txt").write_text(f"{d}-{f}\n" * (f + 1))
        os.chmod(sub / "f0.bin", 0o750)
        os.utime(sub / "f1.bin", ns=(1_000_000_000, 2_000_000_000))
    (root / "empty").mkdir()
    (root / "link-to-file").symlink_to("d0/top0.txt")
    (root / "link-to-dir").symlink_to("d1")


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    return tree_state(root, mtimes=True)


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("symlinks", [False, True])
def test_same_tree_as_shutil(any_fs: Path, workers: int, symlinks: bool) -> None:
    _make_tree(any_fs / "src")
    expected = shutil.copytree(any_fs / "src", any_fs / "by-shutil", symlinks=symlinks)
    got = cowpath.copytree(any_fs / "src", any_fs / "by-cowpath", symlinks=symlinks, workers=workers)
    assert got == any_fs / "by-cowpath"
    assert expected == any_fs / "by-shutil"
    assert _snapshot(any_fs / "by-cowpath") == _snapshot(any_fs / "by-shutil")


@pytest.mark.parametrize("workers", WORKERS)
def test_every_file_of_a_tree_clones(cloning_fs: Path, workers: int) -> None:
    _make_tree(cloning_fs / "src", dirs=8, files=20)
    report = cowpath.CopyReport()
    cowpath.copytree(cloning_fs / "src", cloning_fs / "dst", report=report, workers=workers)
    big = [p for p in (cloning_fs / "dst").rglob("*.bin") if p.stat().st_size >= 8192]
    assert big
    for path in big:
        assert shared_bytes(path) > 0, path
    # With symlinks=False every link is followed: d1 is copied twice (once
    # through link-to-dir, 40 files) and link-to-file becomes a file.
    regular = [p for p in (cloning_fs / "src").rglob("*") if p.is_file() and not p.is_symlink()]
    assert report.files == len(regular) + 40 + 1 == 361
    assert report.files_copied == 0
    assert report.bytes_cloned == sum(
        p.stat().st_size for p in (cloning_fs / "dst").rglob("*") if p.is_file()
    )


def _broken_tree(root: Path) -> None:
    """A tree where shutil meets several errors in several directories."""
    _make_tree(root, dirs=3, files=3)
    (root / "d0" / "dangling").symlink_to("nowhere-at-all")
    (root / "d2" / "inner" / "dangling2").symlink_to("../also-missing")
    os.mkfifo(root / "d1" / "pipe")
    os.mkfifo(root / "pipe-top")


@pytest.mark.parametrize("workers", WORKERS)
def test_errors_in_shutils_order(tmp_path: Path, workers: int) -> None:
    _broken_tree(tmp_path / "src")
    by_shutil = outcome(lambda: shutil.copytree(tmp_path / "src", tmp_path / "a"), tmp_path / "a")
    by_cowpath = outcome(
        lambda: cowpath.copytree(tmp_path / "src", tmp_path / "b", workers=workers), tmp_path / "b"
    )
    # Two dangling links, and three FIFOs (d1's twice: through link-to-dir too).
    assert by_shutil.type is shutil.Error
    assert by_shutil.errors is not None
    assert len(by_shutil.errors) == 5
    assert by_cowpath == by_shutil
    # Everything that could be copied was copied, as shutil does.
    assert _snapshot(tmp_path / "b") == _snapshot(tmp_path / "a")


def test_custom_copy_function_called_in_order_in_calling_thread(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src", dirs=3, files=5)
    calls: list[tuple[str, str, str]] = []

    def record(src: str, dst: str) -> str:
        calls.append((src, dst, threading.current_thread().name))
        return shutil.copy2(src, dst)

    shutil_calls: list[tuple[str, str]] = []

    def record_shutil(src: str, dst: str) -> str:
        shutil_calls.append((src, dst.replace(str(tmp_path / "a"), str(tmp_path / "b"))))
        return shutil.copy2(src, dst)

    shutil.copytree(tmp_path / "src", tmp_path / "a", copy_function=record_shutil)
    cowpath.copytree(tmp_path / "src", tmp_path / "b", copy_function=record, workers=8)
    assert [(s, d) for s, d, _ in calls] == shutil_calls
    assert {name for _, _, name in calls} == {threading.current_thread().name}


def test_ignore_called_like_shutil(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src", dirs=3, files=4)
    seen: dict[str, list[tuple[str, list[str]]]] = {"shutil": [], "cowpath": []}

    def ignore_for(who: str):  # type: ignore[no-untyped-def]
        def ignore(directory: str, names: list[str]) -> set[str]:
            seen[who].append((directory, sorted(names)))
            return {n for n in names if n.startswith("top1") or n == "inner"}

        return ignore

    shutil.copytree(tmp_path / "src", tmp_path / "a", ignore=ignore_for("shutil"))
    cowpath.copytree(tmp_path / "src", tmp_path / "b", ignore=ignore_for("cowpath"))
    assert seen["cowpath"] == seen["shutil"]
    assert _snapshot(tmp_path / "b") == _snapshot(tmp_path / "a")


def test_progress_reports_every_file(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src", dirs=4, files=10)
    updates: list[cowpath.TreeProgress] = []
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", progress=updates.append, symlinks=True)
    files = [p for p in (tmp_path / "src").rglob("*") if p.is_file() and not p.is_symlink()]
    last = updates[-1]
    assert len(updates) == len(files)
    assert last.files_done == last.files_total == len(files)
    assert last.bytes_done == last.bytes_total == sum(p.stat().st_size for p in files)
    assert not last.scanning
    assert [u.files_done for u in updates] == list(range(1, len(files) + 1))


@pytest.mark.parametrize("workers", [1, 4])
def test_interrupt_leaves_no_partial_file(tmp_path: Path, workers: int) -> None:
    _make_tree(tmp_path / "src", dirs=6, files=20)
    count = 0

    def interrupt(progress: cowpath.TreeProgress) -> None:
        nonlocal count
        count += 1
        if count == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cowpath.copytree(tmp_path / "src", tmp_path / "dst", progress=interrupt, workers=workers)
    copied = [p for p in (tmp_path / "dst").rglob("*") if p.is_file() and not p.is_symlink()]
    assert copied, "some files were copied before the interrupt"
    # The interrupt came with the 30th file; each other thread may finish
    # the one file it was copying, and starts no other.
    assert len(copied) <= 30 + workers
    for path in copied:
        original = tmp_path / "src" / path.relative_to(tmp_path / "dst")
        assert path.read_bytes() == original.read_bytes(), path
    # No thread is left running after the call returns.
    assert not [t for t in threading.enumerate() if t.name.startswith("cowpath")]


def test_workers_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="workers"):
        cowpath.copytree(tmp_path / "src", tmp_path / "dst", workers=0)


def test_dirs_exist_ok_writes_in_place_and_into_directories(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src", dirs=2, files=3)
    for name in ("a", "b"):
        target = tmp_path / name / "d0"
        target.mkdir(parents=True)
        (target / "top0.txt").write_text("old")
        (target / "top1.txt").mkdir()  # a directory where the source has a file
    shutil.copytree(tmp_path / "src", tmp_path / "a", dirs_exist_ok=True)
    cowpath.copytree(tmp_path / "src", tmp_path / "b", dirs_exist_ok=True)
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    # That directory's mtime is when the file was created inside it: a clock reading.
    assert a.pop("d0/top1.txt")[:2] == b.pop("d0/top1.txt")[:2]
    assert b == a
    assert (tmp_path / "b" / "d0" / "top1.txt" / "top1.txt").is_file()


def _peak_memory_of_copy(root: Path, dirs: int) -> int:
    import tracemalloc

    src = root / f"src{dirs}"
    for d in range(dirs):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(25):
            (src / f"d{d}" / f"f{f}").write_bytes(b"x" * 100)
    tracemalloc.start()
    try:
        cowpath.copytree(src, root / f"dst{dirs}", workers=2)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_files(tmp_path: Path) -> None:
    small = _peak_memory_of_copy(tmp_path, 40)  # 1,000 files
    large = _peak_memory_of_copy(tmp_path, 640)  # 16,000 files
    # Sixteen times the files (and directories): what is held is the pending
    # work, bounded, plus one small record per directory (its metadata is
    # copied last), not a record per file. With 25 files a directory, a
    # directory's record is about 14 bytes a file; a record per file (its
    # two names alone) would be well over 100.
    per_file = (large - small) / 15_000
    assert per_file < 24, (small, large)
