"""Where a file's data lies on disk: Linux FIEMAP, and sums over physical ranges.

Two files share storage when their extents map to the very same physical
ranges. The FIEMAP ``SHARED`` flag alone says only that *some* other file
(or snapshot) references an extent, so :func:`physical_overlap` compares
the physical ranges themselves. :class:`Usage` adds up a set of files as
``btrfs filesystem du`` does, counting each shared range once.

Imports cleanly everywhere; nothing here touches the system until asked.
"""

from __future__ import annotations

import bisect
import errno
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

try:
    import fcntl
except ImportError:  # Windows: the module must still import there
    fcntl = None  # type: ignore[assignment]

__all__ = ["EXTENT_FLAGS", "Extent", "Usage", "fiemap", "physical_overlap", "within"]

# FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap) (linux/fs.h). struct fiemap
# is 32 bytes (start, length, flags, mapped, count, reserved) and is followed
# by ``count`` struct fiemap_extent of 56 bytes each (linux/fiemap.h).
FS_IOC_FIEMAP: Final = 0xC020660B
FIEMAP_FLAG_SYNC: Final = 0x1  # flush delayed allocations first: they have no physical address yet
_HEADER: Final = struct.Struct("=QQIIII")
_EXTENT: Final = struct.Struct("=QQQQQIIII")
_BATCH: Final = 512  # extents asked for per call

#: Extent flags (linux/fiemap.h), by name.
EXTENT_FLAGS: Final = {
    "last": 0x1,
    "unknown": 0x2,  # the data's location is not known (yet)
    "delalloc": 0x4,  # delayed allocation: no physical block yet
    "encoded": 0x8,  # compressed or encrypted: physical length differs from logical
    "not_aligned": 0x100,
    "inline": 0x200,  # stored in the metadata (btrfs small files): no physical block of its own
    "tail": 0x400,
    "unwritten": 0x800,  # allocated, never written: reads as zeros
    "shared": 0x2000,  # some other file or snapshot also references it
}
_LAST: Final = EXTENT_FLAGS["last"]
_NO_PLACE: Final = EXTENT_FLAGS["unknown"] | EXTENT_FLAGS["delalloc"] | EXTENT_FLAGS["inline"]


@dataclass(frozen=True)
class Extent:
    """One extent of a file: ``length`` bytes at ``logical`` stored at ``physical``."""

    logical: int
    physical: int
    length: int
    flags: int = 0

    def has(self, name: str) -> bool:
        """Whether the extent carries the flag ``name`` (a key of :data:`EXTENT_FLAGS`)."""
        return bool(self.flags & EXTENT_FLAGS[name])

    @property
    def placed(self) -> bool:
        """Its physical address means something: neither inline, delayed nor unknown."""
        return not self.flags & _NO_PLACE

    @property
    def sharable(self) -> bool:
        """It can be the same storage as another file's: placed and written.

        Inline data lives in the metadata and is never shared; an unwritten
        (preallocated) extent holds no data, and btrfs shares such extents
        where XFS does not, so neither is ever counted as shared data.
        """
        return self.placed and not self.has("unwritten")


def fiemap(fd: int) -> list[Extent]:
    """Every extent of the open file, read with ``FS_IOC_FIEMAP`` (delayed allocations flushed)."""
    if sys.platform == "win32":
        raise OSError(errno.EOPNOTSUPP, "FIEMAP is a Linux call")
    found: list[Extent] = []
    start = 0
    while True:
        buf = bytearray(_HEADER.size + _BATCH * _EXTENT.size)
        _HEADER.pack_into(buf, 0, start, 2**64 - 1 - start, FIEMAP_FLAG_SYNC, 0, _BATCH, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        mapped = _HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return found
        for i in range(mapped):
            logical, physical, length, _, _, flags, _, _, _ = _EXTENT.unpack_from(
                buf, _HEADER.size + i * _EXTENT.size
            )
            found.append(Extent(logical, physical, length, flags))
        last = found[-1]
        if last.flags & _LAST:
            return found
        start = last.logical + last.length


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping (start, end) ranges covering the same bytes."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _span(extent: Extent) -> tuple[int, int]:
    return extent.physical, extent.physical + extent.length


def within(extents: Iterable[Extent], size: int) -> list[Extent]:
    """The extents cut at ``size``: a file's last block is mapped whole, past its end."""
    return [
        Extent(e.logical, e.physical, min(e.length, size - e.logical), e.flags)
        for e in extents
        if e.logical < size
    ]


def physical_overlap(a: Sequence[Extent], b: Sequence[Extent]) -> int:
    """Bytes of ``b``'s data stored in the very same physical ranges as some of ``a``'s.

    Only sharable extents count (see :attr:`Extent.sharable`). An encoded
    (compressed) extent's physical length is not its logical length, so it
    counts only when ``a`` has an encoded extent at the same address.
    """
    ranges = _merged(_span(e) for e in a if e.sharable and not e.has("encoded"))
    starts = [start for start, _ in ranges]
    encoded = {e.physical for e in a if e.sharable and e.has("encoded")}
    total = 0
    for extent in b:
        if not extent.sharable:
            continue
        if extent.has("encoded"):
            total += extent.length if extent.physical in encoded else 0
            continue
        low, high = _span(extent)
        i = max(bisect.bisect_right(starts, low) - 1, 0)
        while i < len(ranges) and ranges[i][0] < high:
            total += max(0, min(high, ranges[i][1]) - max(low, ranges[i][0]))
            i += 1
    return total


@dataclass
class Usage:
    """Disk usage of a set of files, each shared range counted once (as ``btrfs filesystem du``).

    ``total`` is every byte of data the files hold (holes excluded);
    ``exclusive`` the bytes in extents no other file or snapshot references;
    ``set_shared`` the bytes of shared extents, each physical range counted
    once however many of these files (or others) reference it. What the
    set really occupies is ``exclusive + set_shared``.
    """

    total: int = 0
    exclusive: int = 0
    _shared: list[tuple[int, int]] = field(default_factory=list, repr=False)
    _encoded: dict[int, int] = field(default_factory=dict, repr=False)

    def add(self, extents: Iterable[Extent]) -> None:
        """Count one file's extents."""
        for extent in extents:
            self.total += extent.length
            if not extent.has("shared") or not extent.placed:
                self.exclusive += extent.length
            elif extent.has("encoded"):
                self._encoded[extent.physical] = max(extent.length, self._encoded.get(extent.physical, 0))
            else:
                self._shared.append(_span(extent))

    def merge(self, other: Usage) -> None:
        """Add the files counted by ``other``."""
        self.total += other.total
        self.exclusive += other.exclusive
        self._shared.extend(other._shared)
        for physical, length in other._encoded.items():
            self._encoded[physical] = max(length, self._encoded.get(physical, 0))

    @property
    def set_shared(self) -> int:
        """Bytes of shared extents, each physical range counted once."""
        self._shared = _merged(self._shared)
        return sum(end - start for start, end in self._shared) + sum(self._encoded.values())
