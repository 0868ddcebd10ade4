"""Reading a ``cowpath dedupe`` run's files into the page cache, in disk order, ahead of the kernel.

``FIDEDUPERANGE`` compares from the page cache, and reads a page that is
missing alone, waiting for it. :class:`Prefetch` reads the files first,
window by window, each window's files in the order they lie on disk, while
the previous window is being compared.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar

from ._dedupe import open_quietly

__all__ = ["WINDOW", "File", "Prefetch", "place", "read_ahead", "window_bytes", "windows_of"]

#: Bytes of files read ahead at once: the window being compared is in the
#: page cache while the next is being read, in disk order.
WINDOW: Final = 256 * 1024 * 1024
_READ: Final = 1024 * 1024


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


def read_ahead(fd: int, size: int) -> None:
    """Start reading the file into the page cache, without waiting.

    The kernel's comparison in ``FIDEDUPERANGE`` reads one page at a time
    and waits for each; pages already read (or on their way) it finds in
    the cache.
    """
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(fd, 0, size, _WILLNEED)


def windows_of(parts: list[list[Found]]) -> list[list[list[Found]]]:
    """The parts in the order the disk can serve them, cut into windows of about :data:`WINDOW` bytes.

    A part can be compared once all its members are read: the parts go in
    the order of their last member on disk.
    """
    parts = sorted(parts, key=lambda part: max(place(item) for item in part))
    windows: list[list[list[Found]]] = []
    held = WINDOW
    for part in parts:
        size = part[0].st.st_size * len(part)
        if held + size > WINDOW:
            windows.append([])
            held = 0
        windows[-1].append(part)
        held += size
    return windows


class Prefetch(Generic[Found]):
    """Reads the windows into the page cache in disk order, one window ahead of the comparisons.

    The files are read, not merely advised (``POSIX_FADV_WILLNEED``): the
    kernel may drop advised read-ahead when the device is busy, and a page
    that is missing when the comparison reaches it is read alone, 4 KiB
    at a time, while the comparison waits (measured: 2-3 times slower over
    the benchmark tree).
    """

    def __init__(self, windows: list[list[list[Found]]], wanted: Callable[[Found], bool]) -> None:
        self.windows = windows
        self.wanted = wanted
        self.ready = [threading.Event() for _ in windows]
        self.room = threading.Semaphore(2)  # the window being compared and the next
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="cowpath-dedupe-read", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        buffer = bytearray(_READ)
        try:
            for window, ready in zip(self.windows, self.ready, strict=True):
                self.room.acquire()
                if self.stopped:
                    return
                if window_bytes(window) <= WINDOW:
                    for item in sorted((item for part in window for item in part), key=place):
                        if self.stopped:
                            return
                        if self.wanted(item):
                            _read_into_cache(item, buffer)
                ready.set()
        finally:
            for ready in self.ready:
                ready.set()

    def wait(self, index: int) -> bool:
        """Wait until window ``index`` is in the cache; False if it was too large to be read ahead."""
        self.ready[index].wait()
        return window_bytes(self.windows[index]) <= WINDOW

    def next(self) -> None:
        """One window compared: the reader may start on another."""
        self.room.release()

    def stop(self) -> None:
        self.stopped = True
        self.room.release()
        self.thread.join()


def _read_into_cache(item: File, buffer: bytearray) -> None:
    """Read the whole file, for the page cache only; failures are the comparison's to report."""
    if _READV is None:
        return  # Windows, which has no dedupe call either
    try:
        fd = open_quietly(item.path, follow=False)
    except OSError:
        return
    try:
        read_ahead(fd, item.st.st_size)
        view = memoryview(buffer)
        while _READV(fd, [view]) == len(view):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def window_bytes(window: list[list[Found]]) -> int:
    return sum(part[0].st.st_size * len(part) for part in window)
