"""Reading a ``cowpath dedupe`` run's files into the page cache, in disk order, ahead of the kernel.

``FIDEDUPERANGE`` compares from the page cache, and reads a page that is
missing alone, waiting for it. :class:`Prefetch` reads the files first,
window by window, each window's files in the order they lie on disk, while
the previous window is being compared, and keeps each file it read mapped
until its window is compared, so that the pages stay in the cache.

A disk serves one pass over a window's files in disk order far better than
several: files of up to :data:`WHOLE_SAMPLE` bytes are read whole in the
same pass as the larger files that passed their partial check, and only
then split by theirs, from the cache.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Final, Generic, Protocol, TypeVar

from ._dedupe import open_quietly

__all__ = [
    "WINDOW",
    "WINDOW_FILES",
    "File",
    "Prefetch",
    "place",
    "read_ahead",
    "window_bytes",
    "windows_of",
]

#: Files of up to this size are read whole before their partial check:
#: one request for a whole file costs a disk about what three requests for
#: three blocks of it cost, and a file that passes (most do) is then in
#: the cache already.
WHOLE_SAMPLE: Final = 1024 * 1024
_READ: Final = 1024 * 1024
_MIB: Final = 1024 * 1024
#: While one file is read, the reading of the next ones is started: at most
#: this many files, and this many bytes, beyond it. A disk (or the file
#: behind a loop device) then always has requests queued, instead of one
#: file's at a time with a round trip between files.
AHEAD_FILES: Final = 32
AHEAD_BYTES: Final = 32 * 1024 * 1024


def _window() -> int:
    """Bytes of files read ahead at once: a sixteenth of the memory, from 256 MiB to 1 GiB.

    The window being compared stays in the page cache (mapped) while the
    next is being read: two windows are held at most. Fewer, larger
    windows mean fewer passes over the disk.
    """
    smallest, largest = 256 * _MIB, 1024 * _MIB
    if sys.platform == "win32":
        return smallest  # no sysconf; and nothing is mapped there (no dedupe call)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return smallest
    return min(max(memory // 16, smallest), largest)


def _window_files() -> int:
    """Files per window: each file read ahead stays mapped, holding a file descriptor
    (Python's mmap keeps its own), until its window is compared. Two windows
    and the comparisons' own descriptors stay under the process's limit.
    """
    limit = 1024
    if sys.platform != "win32":
        import resource  # Unix only

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = 1 << 20 if soft == resource.RLIM_INFINITY else soft
    return min(max((limit - 256) // 2, 64), 4096)


#: Bytes of files read ahead at once (see :func:`_window`).
WINDOW: Final = _window()
#: Files per window (see :func:`_window_files`).
WINDOW_FILES: Final = _window_files()


class File(Protocol):
    """A file found by the walk (``_dedupetree.Found``): its name and its ``lstat``."""

    @property
    def path(self) -> str | bytes: ...

    @property
    def st(self) -> os.stat_result: ...


Found = TypeVar("Found", bound=File)


def place(item: File) -> tuple[int, int]:
    """Where a file roughly lies on its disk: XFS and btrfs number inodes in allocation order."""
    return item.st.st_dev, item.st.st_ino


# Each a function or None, by capability: macOS has neither fadvise nor its
# constant, Windows has no readv.
_FADVISE: Final[Callable[[int, int, int, int], None] | None] = getattr(os, "posix_fadvise", None)
_WILLNEED: Final[int] = getattr(os, "POSIX_FADV_WILLNEED", 0)
_READV: Final[Callable[[int, list[memoryview]], int] | None] = getattr(os, "readv", None)


def read_ahead(fd: int, size: int, offset: int = 0) -> None:
    """Start reading the file into the page cache, without waiting.

    The kernel's comparison in ``FIDEDUPERANGE`` reads one page at a time
    and waits for each; pages already read (or on their way) it finds in
    the cache.
    """
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(fd, offset, size, _WILLNEED)


def windows_of(parts: list[list[Found]]) -> list[list[list[Found]]]:
    """Groups of files in the order the disk can serve them, cut into windows of about :data:`WINDOW` bytes.

    A group can be compared once all its members are read: the groups go
    in the order of their last member on disk.
    """
    parts = sorted(parts, key=lambda part: max(place(item) for item in part))
    windows: list[list[list[Found]]] = []
    held, files = WINDOW, WINDOW_FILES
    for part in parts:
        size = part[0].st.st_size * len(part)
        if held + size > WINDOW or files + len(part) > WINDOW_FILES:
            windows.append([])
            held = files = 0
        windows[-1].append(part)
        held += size
        files += len(part)
    return windows


class Prefetch(Generic[Found]):
    """Reads the windows into the page cache in disk order, one window ahead of the comparisons.

    The files are read (mapped with ``MAP_POPULATE``, which reads what is
    missing), not merely advised (``POSIX_FADV_WILLNEED``): the
    kernel may drop advised read-ahead when the device is busy, and a page
    that is missing when the comparison reaches it is read alone, 4 KiB
    at a time, while the comparison waits (measured: 2-3 times slower over
    the benchmark tree). For the same reason each file read stays mapped
    (read-only) until its window has been compared: the kernel evicts
    clean pages that no process maps first, under memory pressure or when
    anyone writes ``/proc/sys/vm/drop_caches``, and does not evict mapped
    ones for the latter at all. Two windows at most are held.
    """

    def __init__(
        self,
        windows: list[list[list[Found]]],
        split: Callable[[list[list[Found]]], tuple[list[list[Found]], list[Found]]],
        wanted: Callable[[Found], bool],
    ) -> None:
        self.windows = windows
        self.split = split
        self.wanted = wanted
        # Per window: its parts and the files left alone, handed over as
        # soon as they are read, then None once the window is done.
        self.arrivals: list[queue.SimpleQueue[tuple[list[list[Found]], list[Found]] | None]] = [
            queue.SimpleQueue() for _ in windows
        ]
        self.room = threading.Semaphore(2)  # the window being compared and the next
        self.held: list[list[mmap.mmap]] = [[] for _ in windows]
        self.cached = [False] * len(windows)
        self.compared = 0
        self.stopped = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="cowpath-dedupe-read", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for index, window in enumerate(self.windows):
                self.room.acquire()
                if self.stopped:
                    return
                self._window(index, window)
                self.arrivals[index].put(None)
        except BaseException as exc:  # handed to the comparing thread, which raises it
            self.error = exc
        finally:
            for arrivals in self.arrivals:
                arrivals.put(None)

    def _window(self, index: int, window: list[list[Found]]) -> None:
        """The larger files' partial check, then one pass in disk order: the small files whole, and the
        larger ones that passed. Each part is handed over once its last file is read, a group of small
        files once split by its partial check, from the cache.
        """
        small = [group for group in window if group[0].st.st_size <= WHOLE_SAMPLE]
        parts, alone = self.split([group for group in window if group[0].st.st_size > WHOLE_SAMPLE])
        units = [(part, False) for part in parts] + [(group, True) for group in small]
        self.cached[index] = _fits([unit for unit, _ in units])
        if not self.cached[index]:
            small_parts, small_alone = self.split(small)
            self.arrivals[index].put((parts + small_parts, alone + small_alone))
            return
        self.arrivals[index].put(([], alone))
        left = [len(unit) for unit, _ in units]
        buffer = bytearray(_READ)
        order = sorted(
            ((item, k) for k, (unit, _) in enumerate(units) for item in unit), key=lambda i: place(i[0])
        )
        advised = ahead = 0  # files of ``order`` advised so far; their bytes beyond the one being read
        for position, (item, k) in enumerate(order):
            if self.stopped:
                return
            was_advised = position < advised
            if was_advised:
                ahead -= item.st.st_size
            while advised < len(order) and advised - position <= AHEAD_FILES and ahead < AHEAD_BYTES:
                if advised > position:
                    # Not asked whether it is wanted: at worst AHEAD_BYTES are read for nothing.
                    _advise(order[advised][0])
                    ahead += order[advised][0].st.st_size
                advised += 1
            if self.wanted(item):
                pinned = _read_into_cache(item, buffer, advised=was_advised)
                if pinned is not None:
                    self.held[index].append(pinned)
            left[k] -= 1
            if left[k] == 0:
                unit, unsplit = units[k]
                self.arrivals[index].put(self.split([unit]) if unsplit else ([unit], []))

    def wait(self, index: int) -> Iterator[tuple[list[list[Found]], list[Found], bool]]:
        """The parts of window ``index`` as they are read, each with the files left alone and whether the
        parts are in the cache (a window too large to be held is not read ahead).
        """
        while True:
            arrived = self.arrivals[index].get()
            if self.error is not None:
                raise self.error
            if arrived is None:
                return
            parts, alone = arrived
            yield parts, alone, self.cached[index]

    def next(self) -> None:
        """One window compared: its files are let go, and the reader may start on another."""
        _release(self.held[self.compared])
        self.compared += 1
        self.room.release()

    def stop(self) -> None:
        self.stopped = True
        self.room.release()
        self.thread.join()
        for held in self.held:
            _release(held)


def _advise(item: File) -> None:
    """Start reading ``item`` into the page cache (:func:`read_ahead`), without waiting; failures are left."""
    try:
        fd = open_quietly(item.path, follow=False)
    except OSError:
        return
    try:
        read_ahead(fd, item.st.st_size)
    finally:
        os.close(fd)


def _read_into_cache(item: File, buffer: bytearray, advised: bool = False) -> mmap.mmap | None:
    """Read the whole file into the page cache and map it, read-only, to keep it there.

    Mapping with ``MAP_POPULATE`` reads every page that is not in the cache
    yet (the advice, given here or beforehand with ``advised``, has them on
    their way) without copying any out of it.
    Returns the mapping; where the file cannot be mapped, it is read
    instead (None). Failures are the comparison's to report.
    """
    if _READV is None:
        return None  # Windows, which has no dedupe call either
    try:
        fd = open_quietly(item.path, follow=False)
    except OSError:
        return None
    try:
        if not advised:
            read_ahead(fd, item.st.st_size)
        pinned = _pin(fd, item.st.st_size)
        if pinned is None:
            view = memoryview(buffer)
            while _READV(fd, [view]) == len(view):
                pass
        return pinned
    except OSError:
        return None
    finally:
        os.close(fd)


# MAP_POPULATE maps every page now (they were just read); without it
# nothing would be mapped until touched.
_POPULATE: Final[int] = getattr(mmap, "MAP_POPULATE", 0)


def _pin(fd: int, size: int) -> mmap.mmap | None:
    if sys.platform == "win32" or not _POPULATE or size <= 0:
        return None
    try:
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
    except (OSError, ValueError, OverflowError):
        return None  # the file shrank, or no address space left: reading is enough


def _release(held: list[mmap.mmap]) -> None:
    while held:
        held.pop().close()


def window_bytes(window: list[list[Found]]) -> int:
    return sum(part[0].st.st_size * len(part) for part in window)


def _fits(parts: list[list[Found]]) -> bool:
    """Whether the parts can be held in the cache, mapped, as one window."""
    return window_bytes(parts) <= WINDOW and sum(map(len, parts)) <= WINDOW_FILES
