"""Property-based: any size, any holes, any mode: the copy is the source, and clones are clones."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cowpath
from tests.fsutil import allocated_bytes, shared_bytes

BOUNDARIES = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 2**20 - 1, 2**20, 2**20 + 1]
SIZES = st.one_of(st.sampled_from(BOUNDARIES), st.integers(0, 3 * 2**20))
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fresh(base: Path) -> Path:
    path = base / uuid.uuid4().hex
    path.mkdir()
    return path


def _bytes(size: int, seed: int) -> bytes:
    block = bytes((i * 7 + seed) % 256 for i in range(4096))
    return (block * (size // 4096 + 1))[:size]


@SETTINGS
@given(size=SIZES, seed=st.integers(0, 255), mode=st.sampled_from(["auto", "never"]), old=st.none() | SIZES)
def test_any_size_any_fs(
    src_dst_dirs: tuple[Path, Path], size: int, seed: int, mode: str, old: int | None
) -> None:
    a, b = _fresh(src_dst_dirs[0]), _fresh(src_dst_dirs[1])
    data = _bytes(size, seed)
    (a / "src").write_bytes(data)
    if old is not None:
        (b / "dst").write_bytes(_bytes(old, seed + 1))
    cowpath.copyfile(a / "src", b / "dst", reflink=mode)  # type: ignore[arg-type]
    assert (b / "dst").read_bytes() == data
    assert (a / "src").read_bytes() == data
    shutil.rmtree(a)
    if b != a:
        shutil.rmtree(b, ignore_errors=True)


@SETTINGS
@given(size=SIZES, seed=st.integers(0, 255), old=st.none() | SIZES)
def test_clones_share_and_isolate(cloning_fs: Path, size: int, seed: int, old: int | None) -> None:
    where = _fresh(cloning_fs)
    data = _bytes(size, seed)
    (where / "src").write_bytes(data)
    if old is not None:
        (where / "dst").write_bytes(_bytes(old, seed + 1))
    report = cowpath.CopyReport()
    cowpath.reflink(where / "src", where / "dst", report=report)
    assert (where / "dst").read_bytes() == data
    assert report.files_cloned == 1
    # btrfs keeps files smaller than a block inline in its metadata: those
    # never show shared extents. Everything from a block up does.
    if size >= 4096:
        assert shared_bytes(where / "dst") >= size - size % 4096
    if size:
        with open(where / "dst", "r+b") as f:
            f.write(b"\xff" * min(size, 10))
        assert (where / "src").read_bytes() == data
    shutil.rmtree(where)


@st.composite
def _sparse_layout(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    size = draw(st.integers(1, 64)) * 65536 + draw(st.integers(0, 4096))
    extents = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 20000)), max_size=6))
    return size, extents


@SETTINGS
@given(layout=_sparse_layout(), mode=st.sampled_from(["auto", "never"]))
def test_sparse_files_stay_sparse(
    src_dst_dirs: tuple[Path, Path], layout: tuple[int, list[tuple[int, int]]], mode: str
) -> None:
    a, b = _fresh(src_dst_dirs[0]), _fresh(src_dst_dirs[1])
    size, extents = layout
    with open(a / "src", "wb") as f:
        f.truncate(size)
        for offset, length in extents:
            f.seek(offset)
            f.write(os.urandom(min(length, size - offset)))
    cowpath.copyfile(a / "src", b / "dst", reflink=mode)  # type: ignore[arg-type]
    assert (b / "dst").read_bytes() == (a / "src").read_bytes()
    # No more space than the source's data, give or take a block per extent.
    assert allocated_bytes(b / "dst") <= allocated_bytes(a / "src") + 65536 * (len(extents) + 1)
    shutil.rmtree(a)
    if b != a:
        shutil.rmtree(b, ignore_errors=True)


def test_multi_gib_sparse_file(src_dst_dirs: tuple[Path, Path]) -> None:
    a, b = src_dst_dirs
    size = 3 * 2**30 + 12345
    chunks = {0: os.urandom(4096), 2**30 + 7: os.urandom(100_000), size - 5000: os.urandom(5000)}
    with open(a / "big", "wb") as f:
        f.truncate(size)
        for offset, chunk in chunks.items():
            f.seek(offset)
            f.write(chunk)
    cowpath.copy2(a / "big", b / "big-copy")
    assert os.path.getsize(b / "big-copy") == size
    assert allocated_bytes(b / "big-copy") < 8 * 2**20
    with open(b / "big-copy", "rb") as f:
        for offset, chunk in chunks.items():
            f.seek(offset)
            assert f.read(len(chunk)) == chunk
        f.seek(2**29)
        assert f.read(65536) == bytes(65536)
