"""copytree: shutil's semantics, with the file copies spread over threads.

The calling thread walks the tree exactly as ``shutil.copytree`` does (the
same ``scandir``, ``ignore`` and ``makedirs`` calls in the same order, the
symlinks made as it goes) and hands each directory's files, as one batch, to
a small pool of threads: clone and copy calls release the GIL, and measured
on XFS and btrfs, files created in parallel within one directory contend
for its lock while work split by directory scales. When every file is done,
directory metadata is copied deepest first (as shutil does after each
subtree), and the errors are gathered in the order shutil would list them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._backend import FileJob
from ._common import Metadata, ReflinkMode
from ._engine import copy_new_file
from ._select import backend

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = ["WORKERS_DEFAULT", "TreeOptions", "TreeProgress", "copy_tree", "default_workers"]

ErrorTuple = tuple[Any, Any, str]

# Below this many files in all, the pool is not worth starting.
_POOL_THRESHOLD = 16
# A directory's files go to the pool in batches of at most this many, so one
# huge directory still spreads over the threads.
_BATCH = 256
# Batches queued per thread before the walk waits for the copies.
_QUEUED_PER_THREAD = 4


#: How the default number of copying threads is chosen, as the docs and --help state it.
WORKERS_DEFAULT: Final = "one per core, at least 2, at most 8"


def default_workers() -> int:
    """Threads for file copies: one per core, at least 2, at most 8.

    Measured on two cores: a third thread only adds GIL hand-offs.
    """
    return max(2, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class TreeProgress:
    """Where a tree copy stands, passed to a ``progress`` callback after each file.

    ``files_total`` and ``bytes_total`` grow while the source tree is still
    being listed (``scanning`` is true) and are final once it is false.
    """

    files_done: int
    bytes_done: int
    files_total: int
    bytes_total: int
    scanning: bool


def _prefixes(path: Any) -> list[tuple[Any, Any]]:
    """``path`` and ``path + sep``, as str and as bytes."""
    text = os.fsdecode(os.fspath(path))
    raw = os.fsencode(text)
    return [(text, text + os.sep), (raw, raw + os.sep.encode())]


class _File:
    __slots__ = ("dstname", "plain", "seq", "srcname", "srcobj")

    def __init__(self, seq: int, srcobj: Any, srcname: Any, dstname: Any, plain: bool) -> None:
        self.seq = seq
        self.srcobj = srcobj
        self.srcname = srcname
        self.dstname = dstname
        self.plain = plain


@dataclass(frozen=True)
class TreeOptions:
    """copytree's arguments, as the engine takes them."""

    symlinks: bool
    ignore: Callable[[Any, list[str]], Iterable[str]] | None
    copy_function: Callable[..., object]
    # None: a custom copy_function, called as shutil calls it, in order, in
    # the calling thread. Otherwise cowpath's copy (MODE) or copy2 (STAT).
    metadata: Metadata | None
    ignore_dangling_symlinks: bool
    dirs_exist_ok: bool
    mode: ReflinkMode
    report: CopyReport | None
    workers: int | None
    progress: Callable[[TreeProgress], object] | None
    atomic: bool
    # pathlib's Path.copy (Python 3.14) rather than shutil.copytree: the
    # first error is raised as it is and ends the copy, directories and
    # symlinks get metadata only with preserve_metadata, and the top
    # directory's parent must exist.
    first_error: bool = False
    dir_metadata: bool = True
    make_parents: bool = True


class _Tree:
    def __init__(self, options: TreeOptions, workers: int) -> None:
        self.options = options
        self.atomic = options.atomic
        self.symlinks = options.symlinks
        self.ignore = options.ignore
        self.copy_function = options.copy_function
        self.metadata = metadata = options.metadata
        self.ignore_dangling_symlinks = options.ignore_dangling_symlinks
        self.dirs_exist_ok = dirs_exist_ok = options.dirs_exist_ok
        self.mode = options.mode
        self.report = options.report
        self.workers = workers if metadata is not None else 1
        # shutil's rule: its own copy and copy2 get the DirEntry (and use its
        # cached stat), and so do cowpath's; any other function gets a str.
        # Directories are then named by their DirEntry in shutil.Error too.
        self.use_entry = metadata is not None or any(
            options.copy_function is function for function in (shutil.copy, shutil.copy2)
        )
        self.progress = options.progress
        self.backend = backend()
        self.pool: ThreadPoolExecutor | None = None
        self.inflight = threading.BoundedSemaphore(1)
        self.pending: list[list[_File]] = []
        # The batches of the directories being walked, outermost first.
        self.open_batches: list[list[_File]] = []
        # (st_dev, st_ino) of the existing destination directories met.
        self.existing_dirs: set[tuple[int, int]] = set()
        self.pending_files = 0
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.lock = threading.Lock()
        self.files_done = self.bytes_done = self.files_total = self.bytes_total = 0
        self.scanning = True
        self.caller = threading.current_thread()
        self.seq = 0
        # (sequence number, error) as they happen, and (sequence number, src,
        # dst) of each directory in the order its walk ended: deepest first.
        # Nothing is kept of a file once it is copied.
        self.errors: list[tuple[int, ErrorTuple]] = []
        self.dirs: list[tuple[int, Any, Any]] = []
        # (final path, mode) of narrowed directories that get no copystat.
        self.restore: list[tuple[Any, int]] = []
        # A new tree copied with cowpath's own functions is built in a
        # private directory and moved into place (see make_staging).
        self.stage_tree = metadata is not None and not dirs_exist_ok
        self.staging_name = ""
        self.staging: Any = None
        self.final: Any = None
        self.staging_prefixes: list[tuple[Any, Any]] = []
        self.final_prefixes: list[Any] = []
        # Final names of what could not be moved out of the staging directory.
        self.lost: list[str] = []
        # (source, staged path) of the directories to narrow before the moves.
        self.narrow_later: list[tuple[Any, Any]] = []

    # -- the walk, in shutil's order -----------------------------------------

    def next_seq(self) -> int:
        # Every step of the walk gets the next number, so sorting errors by
        # it lists them in shutil's depth-first order. Only the walking
        # thread calls this.
        self.seq += 1
        return self.seq

    def error(self, seq: int, error: ErrorTuple, why: OSError | None = None) -> None:
        if self.options.first_error and why is not None:
            raise self.renamed(why) from None
        with self.lock:
            self.errors.append((seq, error))

    def walk(self, src: Any, dst: Any, entries: list[os.DirEntry[Any]], root: bool = False) -> None:
        if self.ignore is not None:
            ignored: Iterable[str] = self.ignore(os.fspath(src), [e.name for e in entries])
        else:
            ignored = ()
        if self.options.make_parents:
            os.makedirs(dst, exist_ok=self.dirs_exist_ok)
        else:
            os.mkdir(dst)
        shown_dst = dst
        if root and self.stage_tree:
            dst = self.make_staging(dst)
        if self.stage_tree:
            if root or self.staging is None:
                self.narrow(src, shown_dst)
            else:
                # Inside the private directory nobody else can enter: narrowed
                # just before the tree is moved into place, when everything
                # in it has been created. A chmod by a caller outside a setgid
                # directory's group clears S_ISGID (chmod(2)), and what is
                # created in the directory afterwards would not get its group.
                self.narrow_later.append((src, dst))
        batch: list[_File] = []
        # Until it is handed out, this directory's batch is reachable from the
        # tree, so that an exception that ends the walk still copies it (drain).
        self.open_batches.append(batch)
        use_entry = self.use_entry
        dst_text = os.fspath(dst)
        sep: Any = os.sep.encode() if isinstance(dst_text, bytes) else os.sep
        # os.path.join(dst, name) without its per-call cost (POSIX paths
        # only: Windows drives and alternative separators need the real thing).
        dst_prefix: Any = None
        if os.name == "posix" and type(dst_text) is type(os.fspath(src)):
            # With str and bytes mixed, os.path.join raises shutil's TypeError.
            dst_prefix = dst_text if dst_text.endswith(sep) or not dst_text else dst_text + sep
        for entry in entries:
            if entry.name in ignored or entry.name == self.staging_name:
                continue
            # entry.path is os.path.join(src, entry.name), already built.
            srcname = entry.path
            dstname = dst_prefix + entry.name if dst_prefix is not None else os.path.join(dst, entry.name)
            srcobj = entry if use_entry else srcname
            try:
                is_symlink = entry.is_symlink()
                if is_symlink and sys.platform == "win32":
                    # A directory junction looks like a symlink; shutil recurses into it.
                    lstat = entry.stat(follow_symlinks=False)
                    if lstat.st_reparse_tag == stat.IO_REPARSE_TAG_MOUNT_POINT:
                        is_symlink = False
                if is_symlink:
                    linkto = os.readlink(srcname)
                    if self.symlinks:
                        os.symlink(linkto, dstname)
                        if self.options.dir_metadata:
                            shutil.copystat(srcobj, dstname, follow_symlinks=False)
                        continue
                    # shutil tests the link text as a path from the current
                    # directory, not from the link's directory; so does this.
                    if not os.path.exists(linkto) and self.ignore_dangling_symlinks:
                        continue
                    self.keep_order_if_shared(dstname)
                    if entry.is_dir():
                        self.subtree(srcobj, srcname, dstname)
                    else:
                        batch.append(self.file(srcobj, srcname, dstname, False))
                elif entry.is_dir():
                    self.keep_order_if_shared(dstname)
                    self.subtree(srcobj, srcname, dstname)
                else:
                    self.keep_order_if_shared(dstname)
                    plain = entry.is_file(follow_symlinks=False)
                    batch.append(self.file(srcobj, srcname, dstname, plain))
            except OSError as why:
                self.error(self.next_seq(), (srcname, self.shown(dstname), self.describe(why)), why)
            if batch and self.workers <= 1:
                # One thread: each file is copied where shutil copies it,
                # between the same directory steps.
                self.run(batch)
                batch.clear()
        self.open_batches.pop()
        if batch:
            self.schedule(batch)
        # Its metadata is copied after everything in it, as shutil does
        # when a subtree is done.
        # One small record per directory stays until the end: shutil copies
        # a directory's metadata after its contents, and names the source
        # as it was given (a DirEntry below the top) in an error.
        self.dirs.append((self.next_seq(), src, self.shown(shown_dst)))

    def narrow(self, src: Any, path: Any) -> None:
        created = _narrow(src, path)
        if created is not None and not self.options.dir_metadata:
            # No copystat will set its mode: it gets back the one mkdir gave it.
            self.restore.append((self.shown(path), created))

    def keep_order_if_shared(self, dstname: Any) -> None:
        """Copy in shutil's order from here on if ``dstname`` may be another destination too.

        Into an existing tree (dirs_exist_ok) two destination names may be
        one file: hard links, a symlink written through, a symlinked or
        bind-mounted directory. The last copy to write that file decides its
        content, so only shutil's order gives shutil's result: whatever was
        handed out is copied first, then each file where the walk reaches it.
        """
        if not self.dirs_exist_ok or self.workers <= 1:
            return
        try:
            st = os.lstat(dstname)
        except (OSError, ValueError):
            return  # nothing there yet (or the copy will report why)
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in self.existing_dirs:
                self.existing_dirs.add(key)
                return
        elif not stat.S_ISLNK(st.st_mode) and st.st_nlink < 2:
            return
        self.sequential()

    def sequential(self) -> None:
        """Finish every copy handed out, then copy in the calling thread (workers=1)."""
        self.workers = 1
        waiting = [*self.pending, *(batch for batch in self.open_batches if batch)]
        self.pending = []
        self.close()
        for batch in waiting:
            self.run(batch)
        for batch in self.open_batches:
            batch.clear()

    def subtree(self, srcobj: Any, srcname: Any, dstname: Any) -> None:
        sys.audit("shutil.copytree", srcobj, self.shown(dstname))
        try:
            with os.scandir(srcobj) as listing:
                entries = list(listing)
            self.walk(srcobj, dstname, entries)
        except OSError as why:
            self.error(self.next_seq(), (srcname, self.shown(dstname), self.describe(why)))

    # -- staging the whole tree ----------------------------------------------------

    def make_staging(self, dst: Any) -> Any:
        """Create the private directory inside ``dst`` that the tree is built in.

        Files are created directly under their names in it (no per-file
        staging: measured on XFS and btrfs, an O_TMPFILE file and its link
        cost about a third of a small file's clone); nobody else can enter
        it (mode 0700), and a process killed midway leaves only this
        directory, never a partial file under a destination name. None of
        it is visible in names given to the caller: errors name the final
        paths.
        """
        name = f".cowpath-{secrets.token_hex(8)}"
        path = os.path.join(dst, os.fsencode(name) if isinstance(dst, bytes) else name)
        try:
            os.mkdir(path, 0o700)
        except OSError:
            return dst  # stage each file instead
        self.staging_name = name
        self.staging = path
        self.final = dst
        self.staging_prefixes = _prefixes(path)
        text = os.fsdecode(os.fspath(dst))
        self.final_prefixes = [text, os.fsencode(text)]
        return path

    def shown(self, path: Any) -> Any:
        """The name the caller knows for a path inside the staging directory."""
        if self.staging is None or not isinstance(path, (str, bytes)):
            return path
        for (staged, staged_sep), final in zip(self.staging_prefixes, self.final_prefixes, strict=True):
            if type(path) is type(staged):
                if path == staged:
                    return final
                if path.startswith(staged_sep):
                    return os.path.join(final, path[len(staged_sep) :])
        return path

    def renamed(self, why: OSError) -> OSError:
        """``why`` with final names in place of staging ones."""
        first, second = self.shown(why.filename), self.shown(why.filename2)
        if first is why.filename and second is why.filename2:
            return why
        new = type(why)(why.errno, why.strerror, first, None, second)
        new.__traceback__ = why.__traceback__
        return new

    def describe(self, why: OSError) -> str:
        """``str(why)`` as shutil would show it, with final names."""
        if self.staging is None:
            return str(why)
        first, second = self.shown(why.filename), self.shown(why.filename2)
        if first is why.filename and second is why.filename2:
            return str(why)
        return str(OSError(why.errno, why.strerror, first, None, second))

    def unstage(self) -> None:
        """Move the finished tree from the staging directory into place.

        What cannot be moved (a full btrfs may refuse even a rename) is
        removed, so that no private directory stays behind, and reported
        under its final name: the caller finds the tree as shutil would have
        left it had that part failed. An interrupt (Ctrl-C) during the moves
        is raised once they are done, for the same reason.
        """
        if self.staging is None:
            return
        staging, final = self.staging, self.final
        interrupted: BaseException | None = None
        for src, path in self.narrow_later:
            self.narrow(src, path)
        self.narrow_later = []
        names: list[Any] = []
        for _ in range(2):
            try:
                names = os.listdir(staging)
            except OSError as why:
                self.errors.append((self.seq + 1, (final, final, self.describe(why))))
                self.lost.append(os.fsdecode(final))
                shutil.rmtree(staging, ignore_errors=True)
            except BaseException as exc:
                interrupted = interrupted or exc
                continue
            break
        for name in names:
            staged, placed = os.path.join(staging, name), os.path.join(final, name)
            try:
                try:
                    os.rename(staged, placed)
                except BaseException as exc:
                    if isinstance(exc, OSError) or not os.path.lexists(staged):
                        raise
                    interrupted = interrupted or exc
                    os.rename(staged, placed)
            except OSError as why:
                self.errors.append((self.seq + 1, (placed, placed, self.describe(why))))
                self.lost.append(os.fsdecode(placed))
                if os.path.isdir(staged) and not os.path.islink(staged):
                    shutil.rmtree(staged, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(staged)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        self.staging = None
        if interrupted is not None:
            raise interrupted

    def file(self, srcobj: Any, srcname: Any, dstname: Any, plain: bool) -> _File:
        slot = _File(self.next_seq(), srcobj, srcname, dstname, plain)
        if self.progress is not None:
            size = 0
            if plain:
                try:
                    size = srcobj.stat(follow_symlinks=False).st_size
                except (OSError, AttributeError):
                    size = 0
            with self.lock:
                self.files_total += 1
                self.bytes_total += size
        return slot

    # -- running the copies ----------------------------------------------------

    def schedule(self, batch: list[_File]) -> None:
        if self.workers <= 1:
            self.run(batch)
            return
        if self.pool is None:
            self.pending.append(batch)
            self.pending_files += len(batch)
            if self.pending_files < _POOL_THRESHOLD:
                return
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cowpath")
            self.inflight = threading.BoundedSemaphore(self.workers * _QUEUED_PER_THREAD)
            waiting, self.pending = self.pending, []
            for old in waiting:
                self.submit(old)
            return
        self.submit(batch)

    def submit(self, batch: list[_File]) -> None:
        assert self.pool is not None
        for start in range(0, len(batch), _BATCH):
            # Back-pressure: the walk waits while a few batches per thread
            # are queued, so memory holds a bounded list of pending work
            # however large the tree.
            self.inflight.acquire()
            self.pool.submit(self.run_and_release, batch[start : start + _BATCH])

    def run_and_release(self, batch: list[_File]) -> None:
        try:
            self.run(batch)
        finally:
            self.inflight.release()

    def run(self, batch: list[_File]) -> None:
        for slot in batch:
            if self.stop.is_set():
                return
            try:
                try:
                    nbytes = self.copy_one(slot)
                except OSError as why:
                    self.error(slot.seq, (slot.srcname, self.shown(slot.dstname), self.describe(why)), why)
                    nbytes = 0
                if self.progress is not None:
                    with self.lock:
                        self.files_done += 1
                        self.bytes_done += nbytes
                        self.progress(self.snapshot())
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
                return

    def copy_one(self, slot: _File) -> int:
        if self.metadata is None:
            self.copy_function(slot.srcobj, slot.dstname)
            return 0
        # With dirs_exist_ok a file may already be there: shutil rewrites it
        # in place, and so does the general path (the fast path makes new
        # files, and replaces one that appears while it works).
        if slot.plain and not (self.dirs_exist_ok and os.path.lexists(slot.dstname)):
            sys.audit("shutil.copyfile", slot.srcobj, slot.dstname)
            job = FileJob(
                slot.srcname,
                slot.dstname,
                self.mode,
                self.metadata,
                report=self.report,
                direct=self.staging is not None,
            )
            if copy_new_file(self.backend, job):
                return job.nbytes
        before = self.report.bytes if self.report is not None else 0
        self.copy_function(
            slot.srcobj, slot.dstname, reflink=self.mode, report=self.report, atomic=self.atomic
        )
        return self.report.bytes - before if self.report is not None else 0

    def snapshot(self) -> TreeProgress:
        return TreeProgress(
            self.files_done, self.bytes_done, self.files_total, self.bytes_total, self.scanning
        )

    def finish(self) -> None:
        if self.pending:
            waiting, self.pending = self.pending, []
            for batch in waiting:
                self.run(batch)
        with self.lock:
            self.scanning = False
        self.close()
        if self.fatal is not None:
            raise self.fatal

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=self.stop.is_set())
            self.pool = None

    def abort(self) -> None:
        self.stop.set()
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

    # -- after the copies --------------------------------------------------------

    def was_lost(self, path: Any) -> bool:
        text = os.fsdecode(os.fspath(path))
        return any(text == lost or text.startswith(lost + os.sep) for lost in self.lost)

    def collect(self) -> list[ErrorTuple]:
        """Copy directory metadata deepest first; return errors in shutil's order."""
        for path, mode in reversed(self.restore):
            try:
                os.chmod(path, mode)
            except OSError as why:
                if self.options.first_error:
                    raise
                self.errors.append((self.seq + 1, (path, path, str(why))))
        for seq, src, dst in self.dirs if self.options.dir_metadata else ():
            if self.lost and self.was_lost(dst):
                continue  # reported when it could not be moved into place
            try:
                shutil.copystat(src, dst)
            except OSError as why:
                if self.options.first_error:
                    raise
                # Copying access times may fail on Windows; shutil ignores that.
                if getattr(why, "winerror", None) is None:
                    self.errors.append((seq, (src, dst, str(why))))
        self.errors.sort(key=lambda numbered: numbered[0])
        return [error for _, error in self.errors]


def _narrow(src: Any, dst: Any) -> int | None:
    """Give a new directory no more permission for others than its source has.

    Its own mode comes last, with copystat, after the tree is moved into
    place: until then a 0644 file in a 0700 source directory would be open
    to all in a 0755 copy (shutil has that window). The owner keeps full
    access, which the copy needs. Only permission bits are taken away: the
    setgid bit the kernel gives a directory made in a setgid directory
    (mkdir(2)) stays, so that what is created in it gets its group, as
    with shutil; copystat sets the final bits. Returns the mode it had, if
    it changed.
    """
    try:
        wanted = stat.S_IMODE(os.stat(src).st_mode) | stat.S_IRWXU | ~0o777
        current = stat.S_IMODE(os.stat(dst).st_mode)
        if current & ~wanted:
            os.chmod(dst, current & wanted)
            return current
    except OSError:
        pass  # copystat meets the same error later and reports it
    return None


def copy_tree(src: Any, dst: Any, options: TreeOptions) -> Any:
    sys.audit("shutil.copytree", src, dst)
    with os.scandir(src) as listing:
        entries = list(listing)
    workers = options.workers
    if workers is None:
        workers = default_workers()
    elif workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers!r}")
    tree = _Tree(options, workers)
    try:
        tree.walk(src, dst, entries, root=True)
        tree.finish()
    except Exception:
        # An exception from ignore, copy_function or progress: the tree is
        # left as shutil's order leaves it, every file reached copied and
        # the directories whose walk was complete with their metadata; the
        # errors collected so far are dropped, as shutil drops them.
        try:
            tree.drain()
        finally:
            tree.abort()
            with contextlib.suppress(OSError):
                tree.unstage()
        tree.collect()
        raise
    except BaseException:
        # An interrupt (Ctrl-C) stops at once, copying nothing more.
        tree.abort()
        # What was copied is moved into place, every file of it whole, as
        # shutil leaves the files it copied before the exception.
        with contextlib.suppress(OSError):
            tree.unstage()
        raise
    tree.unstage()
    errors = tree.collect()
    if errors:
        raise shutil.Error(errors)
    return dst
