"""The threads that copy a tree's files while the calling thread walks it.

The walk hands each directory's files over as one batch: clone and copy
calls release the GIL, and measured on XFS and btrfs, files created in
parallel within one directory contend for its lock while work split by
directory scales. The walk waits while a few batches per thread are queued
(back-pressure), so memory holds a bounded amount of pending work however
large the tree. Each file carries its place in the walk, so that errors can
be listed in shutil's order whichever thread met them.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from . import _procs

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ._common import Identity
    from ._procs import Helper, Helpers

__all__ = ["CopyPool", "FileSlot", "TreeProgress"]

# Below this many files in all, the pool is not worth starting.
_POOL_THRESHOLD: Final = 16
# A directory's files go to the pool in batches of at most this many, so one
# huge directory still spreads over the threads.
_BATCH: Final = 256
# Batches queued per thread before the walk waits for the copies.
_QUEUED_PER_THREAD: Final = 4


@dataclass(frozen=True)
class TreeProgress:
    """Where a tree copy stands, passed to a ``progress`` callback after each file.

    ``files_total`` and ``bytes_total`` grow while the source tree is still
    being listed (``scanning`` is true) and are final once it is false.
    """

    files_done: int
    """Regular files copied so far."""
    bytes_done: int
    """Bytes of those files."""
    files_total: int
    """Regular files found in the source so far (final once ``scanning`` is false)."""
    bytes_total: int
    """Bytes of those files (final once ``scanning`` is false)."""
    scanning: bool
    """The source tree is still being listed: the totals may still grow."""


class FileSlot:
    """One file the walk reached: its place in shutil's order and its names."""

    __slots__ = ("dstname", "plain", "seq", "srcname", "srcobj")

    def __init__(self, seq: int, srcobj: Any, srcname: Any, dstname: Any, plain: bool) -> None:
        self.seq = seq
        self.srcobj = srcobj
        self.srcname = srcname
        self.dstname = dstname
        self.plain = plain


class Remote(Protocol):
    """What the helper processes need of the tree copy (:class:`cowpath._tree._Tree`)."""

    helpers: Helpers | None

    def remote_job(self, slot: FileSlot) -> tuple[Any, Any] | None:
        """The (source, destination) a helper copies, or None: the thread copies ``slot``."""

    def remote_header(self) -> tuple[Any, ...]:
        """How every job is copied: (mode, metadata, into a private directory, counting)."""

    def remote_done(self, slot: FileSlot, *, nbytes: int, identity: Identity | None) -> int:
        """A helper copied ``slot``; return its bytes."""

    def remote_declined(self, slot: FileSlot) -> int:
        """Copy ``slot`` by the general path (the helper's fast path did not apply)."""

    def remote_counts(self, counts: tuple[int, int, int, int]) -> None:
        """Add a helper's report counts."""


class CopyPool:
    """Runs ``copy_one`` on each file handed over, on up to ``workers`` threads.

    An ``OSError`` from a copy goes to ``failed`` and the copies go on;
    anything else (or anything from the ``progress`` callback) ends the
    whole copy, as in shutil: the other threads stop before their next
    file, and :meth:`finish` raises it in the calling thread.
    """

    def __init__(
        self,
        workers: int,
        copy_one: Callable[[FileSlot], int],
        failed: Callable[[FileSlot, OSError], None],
        progress: Callable[[TreeProgress], object] | None,
        remote: Remote | None = None,
    ) -> None:
        self.workers = workers
        # Helper processes copy the files of a large tree (cowpath._procs).
        self.remote = remote
        self.files_seen = 0
        self.copy_one = copy_one
        self.failed = failed
        self.progress = progress
        self.pool: ThreadPoolExecutor | None = None
        self.inflight = threading.BoundedSemaphore(1)
        self.pending: list[list[FileSlot]] = []
        self.pending_files = 0
        # The batches of the directories being walked, outermost first.
        self.open_batches: list[list[FileSlot]] = []
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.lock = threading.Lock()
        self.files_done = self.bytes_done = self.files_total = self.bytes_total = 0
        self.scanning = True
        self.caller = threading.current_thread()

    def counted(self, slot: FileSlot, size: int) -> FileSlot:
        """``slot``, counted in the progress totals."""
        if self.progress is not None:
            with self.lock:
                self.files_total += 1
                self.bytes_total += size
        return slot

    def schedule(self, batch: list[FileSlot]) -> None:
        """Hand over a directory's files: copied now with one worker, else queued for the threads."""
        if self.workers <= 1:
            self.run(batch)
            return
        self.files_seen += len(batch)
        helpers = self.remote.helpers if self.remote is not None else None
        if helpers is not None and not helpers.started and self.files_seen >= _procs.MIN_FILES:
            # Started from the walking thread: a helper dies when the
            # thread that started it ends (PR_SET_PDEATHSIG).
            helpers.start(self.workers)
        if self.pool is None:
            self.pending.append(batch)
            self.pending_files += len(batch)
            if self.pending_files < _POOL_THRESHOLD:
                return
            # Imported here: concurrent.futures brings logging, which a copy
            # that never starts threads has no use for.
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cowpath")
            self.inflight = threading.BoundedSemaphore(self.workers * _QUEUED_PER_THREAD)
            waiting, self.pending = self.pending, []
            for old in waiting:
                self._submit(old)
            return
        self._submit(batch)

    def _submit(self, batch: list[FileSlot]) -> None:
        assert self.pool is not None
        for start in range(0, len(batch), _BATCH):
            # Back-pressure: the walk waits while a few batches per thread
            # are queued, so memory holds a bounded list of pending work
            # however large the tree.
            self.inflight.acquire()
            self.pool.submit(self._run_and_release, batch[start : start + _BATCH])

    def _run_and_release(self, batch: list[FileSlot]) -> None:
        helpers = self.remote.helpers if self.remote is not None else None
        helper = helpers.take() if helpers is not None else None
        try:
            if helper is None:
                self.run(batch)
            else:
                self.run_remote(helper, batch)
        finally:
            if helper is not None and helpers is not None:
                helpers.give_back(helper)
            self.inflight.release()

    def run(self, batch: list[FileSlot]) -> None:
        """Copy each file of ``batch`` in this thread."""
        for slot in batch:
            if self.stop.is_set() or not self._settle(slot, self.copy_one):
                return

    def run_remote(self, helper: Helper, batch: list[FileSlot]) -> None:
        """Have ``helper`` copy what it can of ``batch``; settle each file here, copy the rest."""
        remote = self.remote
        assert remote is not None
        here: list[FileSlot] = []
        sent: list[FileSlot] = []
        jobs: list[tuple[Any, Any]] = []
        for slot in batch:
            job = remote.remote_job(slot)
            if job is None:
                here.append(slot)
            else:
                sent.append(slot)
                jobs.append(job)
        if jobs:
            answer = helper.call((*remote.remote_header(), jobs))
            counts, sizes, stats, others = answer if answer is not None else (None, [], [], {})
            if counts is not None:
                remote.remote_counts(counts)
            if self.progress is None and not stats:
                # Nothing to settle for a file copied: only the others.
                for index, outcome in others.items():
                    if self.stop.is_set() or not self._settle(sent[index], self._other(outcome)):
                        return
            else:
                for index, nbytes in enumerate(sizes):
                    outcome = others.get(index)
                    if outcome is not None:
                        settle = self._other(outcome)
                    else:
                        settle = functools.partial(
                            remote.remote_done, nbytes=nbytes, identity=stats[index] if stats else None
                        )
                    if self.stop.is_set() or not self._settle(sent[index], settle):
                        return
            # A helper that stopped or died before the end: the rest is copied here.
            here.extend(sent[len(sizes) :])
        self.run(here)

    def _other(self, outcome: tuple[Any, ...]) -> Callable[[FileSlot], int]:
        """How to settle a file the helper did not copy."""
        assert self.remote is not None
        if outcome[0] == _procs.DECLINED:
            return self.remote.remote_declined
        error = outcome[1]

        def fail(slot: FileSlot) -> int:
            raise error

        return fail

    def _settle(self, slot: FileSlot, copy: Callable[[FileSlot], int]) -> bool:
        """Copy ``slot`` with ``copy``, record its error or progress; False if the copy must end."""
        try:
            try:
                nbytes = copy(slot)
            except OSError as why:
                self.failed(slot, why)
                nbytes = 0
            if self.progress is not None:
                with self.lock:
                    self.files_done += 1
                    self.bytes_done += nbytes
                    self.progress(self._snapshot())
        except BaseException as exc:
            # Anything but an OSError from a copy (or anything at all
            # from the progress callback) ends the whole copy, as in
            # shutil; the other threads stop before their next file.
            self.stop.set()
            if threading.current_thread() is self.caller:
                raise
            with self.lock:
                if self.fatal is None:
                    self.fatal = exc
            return False
        return True

    def _snapshot(self) -> TreeProgress:
        return TreeProgress(
            self.files_done, self.bytes_done, self.files_total, self.bytes_total, self.scanning
        )

    def sequential(self) -> None:
        """Finish every copy handed out, then copy in the calling thread (one worker)."""
        self.workers = 1
        waiting = [*self.pending, *(batch for batch in self.open_batches if batch)]
        self.pending = []
        self.close()
        for batch in waiting:
            self.run(batch)
        for batch in self.open_batches:
            batch.clear()

    def finish(self) -> None:
        """Copy what is still queued, wait for the threads; raise what ended the copy, if anything."""
        # The walk is over: the totals are final for every file still to copy.
        with self.lock:
            self.scanning = False
        if self.pending:
            waiting, self.pending = self.pending, []
            for batch in waiting:
                self.run(batch)
        self.close()
        if self.fatal is not None:
            raise self.fatal

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=self.stop.is_set())
            self.pool = None
        if self.remote is not None and self.remote.helpers is not None:
            helpers, self.remote.helpers = self.remote.helpers, None
            helpers.close()

    def abort(self) -> None:
        self.stop.set()
        if self.remote is not None and self.remote.helpers is not None:
            # Each stops after the file in hand and answers for what it did.
            self.remote.helpers.stop()
        self.close()

    def drain(self) -> None:
        """Copy the files the walk had reached when an exception ended it.

        shutil copies each file as its walk reaches it: an exception from
        ``ignore`` or ``copy_function`` finds every earlier file copied.
        Unless a copy itself raised (which stops the copies, as in shutil),
        the batches not yet done are done now and the threads finish theirs.
        """
        waiting = [*self.pending, *(batch for batch in self.open_batches if batch)]
        self.pending, self.open_batches = [], []
        if not self.stop.is_set():
            for batch in waiting:
                self.run(batch)
        self.close()
