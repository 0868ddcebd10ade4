"""The sources every tool copies: a tree of many small files and one large file.

Both are deterministic for a given size and seed, so two runs (or two
machines) copy the same bytes in the same layout.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "FULL",
    "QUICK",
    "FileSpec",
    "TreeSpec",
    "Workload",
    "make_file",
    "make_tree",
    "tree_layout",
    "verify_file",
    "verify_tree",
]

MIB = 1024 * 1024
# File sizes are 100 B + 69,900 B * u**SKEW for u uniform in [0, 1): many
# small files and a few large ones, as in a package cache or a checkout. With
# this skew the mean is about 16.8 kB, so 10,000 files come to ~160 MiB.
MIN_SIZE = 100
MAX_SIZE = 70_000
SKEW = 3.2


@dataclass(frozen=True)
class TreeSpec:
    files: int
    dirs: int
    seed: int = 20240601


@dataclass(frozen=True)
class FileSpec:
    size: int


#: The small tree: where helper processes must not start, and threads must not lose.
SMALL_TREE = TreeSpec(files=100, dirs=4)


@dataclass(frozen=True)
class Workload:
    tree: TreeSpec
    file: FileSpec
    small: TreeSpec = SMALL_TREE

    def describe(self) -> dict[str, Any]:
        return {"tree": asdict(self.tree), "smalltree": asdict(self.small), "file": asdict(self.file)}

    def tree_of(self, case: str) -> TreeSpec:
        """The tree copied by a tree case."""
        return self.small if case == "smalltree" else self.tree


FULL = Workload(TreeSpec(files=10_000, dirs=200), FileSpec(size=1024 * MIB))
QUICK = Workload(TreeSpec(files=400, dirs=10), FileSpec(size=64 * MIB))


def _directories(spec: TreeSpec) -> list[str]:
    """Relative paths of ``spec.dirs`` directories: top-level ones with nine subdirectories each."""
    per_top = 10
    tops = max(1, spec.dirs // per_top)
    found: list[str] = []
    for t in range(tops):
        top = f"pkg{t:03d}"
        found.append(top)
        found.extend(os.path.join(top, f"mod{s}") for s in range(per_top - 1))
    # Any remainder becomes extra top-level directories.
    found.extend(f"extra{i:03d}" for i in range(spec.dirs - len(found)))
    return found[: spec.dirs]


def tree_layout(spec: TreeSpec) -> list[tuple[str, int]]:
    """(relative path, size) of every file of the tree, in creation order."""
    rng = random.Random(spec.seed)
    dirs = _directories(spec)
    layout = []
    for i in range(spec.files):
        size = int(MIN_SIZE + (MAX_SIZE - MIN_SIZE) * rng.random() ** SKEW)
        layout.append((os.path.join(dirs[i % len(dirs)], f"file{i:05d}.dat"), size))
    return layout


def make_tree(spec: TreeSpec, root: str) -> tuple[int, int]:
    """Write the tree under ``root`` (which must not exist); return (files, bytes)."""
    rng = random.Random(spec.seed + 1)
    for d in _directories(spec):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    total = 0
    layout = tree_layout(spec)
    for rel, size in layout:
        with open(os.path.join(root, rel), "wb") as f:
            f.write(rng.randbytes(size))
        total += size
    return len(layout), total


def make_file(spec: FileSpec, path: str) -> int:
    """Write one file of ``spec.size`` random bytes, written sequentially and synced."""
    chunk = 8 * MIB
    left = spec.size
    with open(path, "wb") as f:
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())
    return spec.size


def verify_tree(spec: TreeSpec, src: str, dst: str) -> str | None:
    """None if ``dst`` holds every file of the tree at the right size (and a sample byte for byte)."""
    for index, (rel, size) in enumerate(tree_layout(spec)):
        target = os.path.join(dst, rel)
        try:
            got = os.stat(target).st_size
        except OSError as exc:
            return f"{rel}: {exc.strerror}"
        if got != size:
            return f"{rel}: {got} bytes, expected {size}"
        if index % 499 == 0:
            with open(os.path.join(src, rel), "rb") as a, open(target, "rb") as b:
                if a.read() != b.read():
                    return f"{rel}: content differs"
    return None


def verify_file(src: str, dst: str) -> str | None:
    """None if ``dst`` has the size of ``src`` and the same first, middle and last MiB."""
    try:
        size = os.stat(dst).st_size
    except OSError as exc:
        return f"{dst}: {exc.strerror}"
    if size != os.stat(src).st_size:
        return f"{size} bytes, expected {os.stat(src).st_size}"
    with open(src, "rb") as a, open(dst, "rb") as b:
        for offset in (0, max(0, size // 2 - MIB // 2), max(0, size - MIB)):
            a.seek(offset)
            b.seek(offset)
            if a.read(MIB) != b.read(MIB):
                return f"content differs near offset {offset}"
    return None
