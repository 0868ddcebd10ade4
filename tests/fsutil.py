"""Facts about files that tests check: shared extents, space, sparseness, listings.

And files of known content to check them against (:func:`write_file`).
"""

from __future__ import annotations

import array
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap); struct fiemap is 32 bytes
# and each struct fiemap_extent 56 (linux/fiemap.h).
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_HEADER = struct.Struct("=QQIIII")
_EXTENT = struct.Struct("=QQQQQIIII")
assert _HEADER.size == 32
assert _EXTENT.size == 56


@dataclass(frozen=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def shared(self) -> bool:
        return bool(self.flags & FIEMAP_EXTENT_SHARED)


def extents(path: str | os.PathLike[str]) -> list[Extent]:
    """Every extent of the file, read with FS_IOC_FIEMAP (syncing first)."""
    import fcntl  # Linux only; imported here so that the module loads on every OS

    found: list[Extent] = []
    start = 0
    batch = 256
    with open(path, "rb") as f:
        while True:
            buf = array.array("B", bytes(_HEADER.size + batch * _EXTENT.size))
            _HEADER.pack_into(buf, 0, start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC, 0, batch, 0)
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf, True)
            mapped = _HEADER.unpack_from(buf, 0)[3]
            if mapped == 0:
                return found
            last = None
            for i in range(mapped):
                fields = _EXTENT.unpack_from(buf, _HEADER.size + i * _EXTENT.size)
                last = Extent(fields[0], fields[1], fields[2], fields[5])
                found.append(last)
            assert last is not None
            if last.flags & FIEMAP_EXTENT_LAST:
                return found
            start = last.logical + last.length


def shared_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of the file that sit in extents shared with another file."""
    return sum(e.length for e in extents(path) if e.shared)


def data_bytes(path: str | os.PathLike[str]) -> int:
    return sum(e.length for e in extents(path))


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free space of the filesystem, after flushing delayed allocations."""
    os.sync()
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def allocated_bytes(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_blocks * 512


_ENTERED: list[object] = []


def force_named_staging() -> None:
    """For the rest of this (child) process, stage new files under private names."""
    from cowpath._linux import LinuxBackend
    from cowpath._select import use_backend

    chosen = use_backend(LinuxBackend(unnamed_staging=False))
    chosen.__enter__()
    _ENTERED.append(chosen)  # the context ends only with the process


def write_file(path: Path, size: int, seed: int = 7) -> bytes:
    """Write ``size`` bytes of a pattern that differs with ``seed`` to ``path``; return them."""
    data = bytes((i * 31 + seed) % 251 for i in range(size))
    path.write_bytes(data)
    return data


def listing(directory: str | os.PathLike[str]) -> list[str]:
    """The names in ``directory``, sorted."""
    return sorted(os.listdir(directory))


def child_processes() -> list[int]:
    """This process's living child processes (zombies included)."""
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            found += [int(pid) for pid in f.read().split()]
    return found
