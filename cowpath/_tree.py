"""copytree: shutil's semantics, with the file copies spread over threads.

The calling thread walks the tree exactly as ``shutil.copytree`` does (the
same ``scandir``, ``ignore`` and ``makedirs`` calls in the same order, the
symlinks made as it goes) and hands each directory's files to the threads of
:mod:`cowpath._pool`; a new tree is built in the private directory of
:mod:`cowpath._treestage`. When every file is done, directory metadata is
copied deepest first (as shutil does after each subtree), and the errors
are gathered in the order shutil would list them.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from . import _procs
from ._backend import FileJob
from ._common import Identity, Metadata, ReflinkMode, identity_of
from ._engine import copy_new_file
from ._pool import CopyPool, FileSlot, TreeProgress
from ._report import CopyReport
from ._select import BACKEND, backend
from ._treestage import ErrorTuple, TreeStaging, narrow_directory

__all__ = ["WORKERS_DEFAULT", "TreeOptions", "TreeProgress", "default_workers"]

#: How the default number of copying threads is chosen, as the docs and --help state it.
WORKERS_DEFAULT: Final = "one per core, at least 2, at most 8"


def default_workers() -> int:
    """Threads for file copies: one per core, at least 2, at most 8.

    Measured on two cores: a third thread only adds GIL hand-offs.
    """
    return max(2, min(8, os.cpu_count() or 1))


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
    # Told of each entry copied, with its source path and the identity
    # (cowpath._common.identity_of) of its stat taken before the copy read
    # it (a move removes only those entries, unchanged: cowpath._moveclean).
    # Directories are told before their walk.
    copied: Callable[[Any, Identity], object] | None = None


class _Tree:
    """One tree copy: the walk, its errors and directory records; files go to a CopyPool."""

    def __init__(self, options: TreeOptions, workers: int) -> None:
        self.options = options
        self.atomic = options.atomic
        self.symlinks = options.symlinks
        self.ignore = options.ignore
        self.copy_function = options.copy_function
        self.metadata = metadata = options.metadata
        self.ignore_dangling_symlinks = options.ignore_dangling_symlinks
        self.dirs_exist_ok = options.dirs_exist_ok
        self.mode = options.mode
        self.report = options.report
        self.copied = options.copied
        # shutil's rule: its own copy and copy2 get the DirEntry (and use its
        # cached stat), and so do cowpath's; any other function gets a str.
        # Directories are then named by their DirEntry in shutil.Error too.
        self.use_entry = metadata is not None or any(
            options.copy_function is function for function in (shutil.copy, shutil.copy2)
        )
        self.backend = backend()
        # A custom copy_function is called in the calling thread, in order.
        workers = workers if metadata is not None else 1
        # A large tree's files go to helper processes (cowpath._procs) where
        # they can copy as this process would: the OS backend, not a fake.
        self.helpers = (
            _procs.Helpers() if workers > 1 and self.backend is BACKEND and _procs.available() else None
        )
        self.pool = CopyPool(workers, self.copy_one, self.file_failed, options.progress, self)
        # (st_dev, st_ino) of the existing destination directories met.
        self.existing_dirs: set[tuple[int, int]] = set()
        self.seq = 0
        self.lock = threading.Lock()
        # (sequence number, error) as they happen, and (sequence number, src,
        # dst) of each directory in the order its walk ended: deepest first.
        # Nothing is kept of a file once it is copied.
        self.errors: list[tuple[Any, ErrorTuple]] = []
        self.dirs: list[tuple[Any, Any, Any]] = []
        # (final path, mode) of narrowed directories that get no copystat.
        self.restore: list[tuple[Any, int]] = []
        # A new tree copied with cowpath's own functions is built in a
        # private directory and moved into place.
        self.stage_tree = metadata is not None and not options.dirs_exist_ok
        self.staging = TreeStaging()

    # -- the walk, in shutil's order -----------------------------------------

    def next_seq(self) -> int:
        # Every step of the walk gets the next number, so sorting errors by
        # it lists them in shutil's depth-first order. Only the walking
        # thread calls this.
        self.seq += 1
        return self.seq

    def error(self, seq: Any, srcname: Any, dstname: Any, why: OSError, raising: bool = True) -> None:
        """Record a failure under final names; with ``first_error``, raise it instead."""
        if raising and self.options.first_error:
            raise self.staging.renamed(why) from None
        with self.lock:
            self.errors.append((seq, (srcname, self.staging.shown(dstname), self.staging.describe(why))))

    def file_failed(self, slot: FileSlot, why: OSError) -> None:
        self.error(slot.seq, slot.srcname, slot.dstname, why)

    def late_failure(self, error: ErrorTuple) -> None:
        """A failure after the walk (moving into place, directory modes): listed last."""
        self.errors.append((self.seq + 1, error))

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
            dst = self.staging.make(dst)
        if self.stage_tree:
            if root or self.staging.path is None:
                self.narrow(src, shown_dst)
            else:
                # Inside the private directory nobody else can enter: narrowed
                # just before the tree is moved into place, when everything
                # in it has been created. A chmod by a caller outside a setgid
                # directory's group clears S_ISGID (chmod(2)), and what is
                # created in the directory afterwards would not get its group.
                self.staging.narrow_later.append((src, dst))
        batch: list[FileSlot] = []
        # Until it is handed out, this directory's batch is reachable from the
        # tree, so that an exception that ends the walk still copies it (drain).
        self.pool.open_batches.append(batch)
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
            if entry.name in ignored or entry.name == self.staging.name:
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
                    lstat_before = entry.stat(follow_symlinks=False) if self.copied is not None else None
                    linkto = os.readlink(srcname)
                    if self.symlinks:
                        os.symlink(linkto, dstname)
                        if lstat_before is not None and self.copied is not None:
                            self.copied(srcname, identity_of(lstat_before))
                        if self.options.dir_metadata:
                            shutil.copystat(srcobj, dstname, follow_symlinks=False)
                        continue
                    # shutil tests the link text as a path from the current
                    # directory, not from the link's directory; so does this.
                    if not os.path.exists(linkto) and self.ignore_dangling_symlinks:
                        continue
                    if self.dirs_exist_ok:
                        self.keep_order_if_shared(dstname)
                    if entry.is_dir():
                        self.subtree(srcobj, srcname, dstname)
                    else:
                        batch.append(self.file(srcobj, srcname, dstname, False))
                elif entry.is_dir():
                    if self.dirs_exist_ok:
                        self.keep_order_if_shared(dstname)
                    self.subtree(srcobj, srcname, dstname)
                else:
                    if self.dirs_exist_ok:
                        self.keep_order_if_shared(dstname)
                    plain = entry.is_file(follow_symlinks=False)
                    batch.append(self.file(srcobj, srcname, dstname, plain))
            except OSError as why:
                self.error(self.next_seq(), srcname, dstname, why)
            if batch and self.pool.workers <= 1:
                # One thread: each file is copied where shutil copies it,
                # between the same directory steps.
                self.pool.run(batch)
                batch.clear()
        self.pool.open_batches.pop()
        if batch:
            self.pool.schedule(batch)
        # Its metadata is copied after everything in it, as shutil does
        # when a subtree is done.
        # One small record per directory stays until the end: shutil copies
        # a directory's metadata after its contents, and names the source
        # as it was given (a DirEntry below the top) in an error.
        self.dirs.append((self.next_seq(), src, self.staging.shown(shown_dst)))

    def narrow(self, src: Any, path: Any) -> None:
        created = narrow_directory(src, path)
        if created is not None and not self.options.dir_metadata:
            # No copystat will set its mode: it gets back the one mkdir gave it.
            self.restore.append((self.staging.shown(path), created))

    def keep_order_if_shared(self, dstname: Any) -> None:
        """Copy in shutil's order from here on if ``dstname`` may be another destination too.

        Into an existing tree (dirs_exist_ok) two destination names may be
        one file: hard links, a symlink written through, a symlinked or
        bind-mounted directory. The last copy to write that file decides its
        content, so only shutil's order gives shutil's result: whatever was
        handed out is copied first, then each file where the walk reaches it.
        """
        if self.pool.workers <= 1:
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
        self.pool.sequential()

    def subtree(self, srcobj: Any, srcname: Any, dstname: Any) -> None:
        sys.audit("shutil.copytree", srcobj, self.staging.shown(dstname))
        try:
            if self.copied is not None:
                self.copied(srcname, identity_of(os.lstat(srcname)))
            with os.scandir(srcobj) as listing:
                entries = list(listing)
            self.walk(srcobj, dstname, entries)
        except OSError as why:
            self.error(self.next_seq(), srcname, dstname, why, raising=False)

    def file(self, srcobj: Any, srcname: Any, dstname: Any, plain: bool) -> FileSlot:
        slot = FileSlot(self.next_seq(), srcobj, srcname, dstname, plain)
        size = 0
        if plain and self.pool.progress is not None:
            try:
                size = srcobj.stat(follow_symlinks=False).st_size
            except (OSError, AttributeError):
                size = 0
        return self.pool.counted(slot, size) if self.pool.progress is not None else slot

    # -- running the copies ----------------------------------------------------

    def copy_one(self, slot: FileSlot) -> int:
        copied = self.copied
        if self.metadata is None:
            before = os.lstat(slot.srcname) if copied is not None else None
            self.copy_function(slot.srcobj, slot.dstname)
            if copied is not None and before is not None:
                copied(slot.srcname, identity_of(before))
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
                direct=self.staging.path is not None,
            )
            if copy_new_file(self.backend, job):
                if copied is not None and job.src_st is not None:
                    # The open source's fstat, before its data was read: no lstat of its own.
                    copied(slot.srcname, identity_of(job.src_st))
                return job.nbytes
        return self.copy_general(slot)

    def copy_general(self, slot: FileSlot) -> int:
        """cowpath's own copy function, for what the fast path does not copy."""
        copied = self.copied
        before = os.lstat(slot.srcname) if copied is not None else None
        # Counted apart: other threads add to the caller's report meanwhile.
        own = CopyReport() if self.report is not None else None
        try:
            self.copy_function(slot.srcobj, slot.dstname, reflink=self.mode, report=own, atomic=self.atomic)
        finally:
            if own is not None and self.report is not None:
                self.report.merge(own)
        if copied is not None and before is not None:
            copied(slot.srcname, identity_of(before))
        return own.bytes if own is not None else 0

    # -- in helper processes (cowpath._pool.Remote) -----------------------------

    def remote_job(self, slot: FileSlot) -> tuple[Any, Any] | None:
        if not slot.plain or (self.dirs_exist_ok and os.path.lexists(slot.dstname)):
            return None
        sys.audit("shutil.copyfile", slot.srcobj, slot.dstname)
        return (slot.srcname, slot.dstname)

    def remote_header(self) -> tuple[Any, ...]:
        counting = self.report is not None
        return (self.mode, self.metadata, self.staging.path is not None, counting, self.copied is not None)

    def remote_done(self, slot: FileSlot, *, nbytes: int, identity: Identity | None) -> int:
        if self.copied is not None and identity is not None:
            self.copied(slot.srcname, identity)
        return nbytes

    def remote_declined(self, slot: FileSlot) -> int:
        return self.copy_general(slot)

    def remote_counts(self, counts: tuple[int, int, int, int]) -> None:
        if self.report is not None:
            self.report.merge(CopyReport(*counts))

    # -- after the copies --------------------------------------------------------

    def unstage(self) -> None:
        self.staging.unstage(self.narrow, self.late_failure)

    def dir_records(self) -> Iterable[tuple[Any, Any, Any]]:
        """(place, source, final path) of each directory whose walk ended, deepest first."""
        return self.dirs

    def collect(self) -> list[ErrorTuple]:
        """Copy directory metadata deepest first; return errors in shutil's order."""
        for path, mode in reversed(self.restore):
            try:
                os.chmod(path, mode)
            except OSError as why:
                if self.options.first_error:
                    raise
                self.late_failure((path, path, str(why)))
        for seq, src, dst in self.dir_records() if self.options.dir_metadata else ():
            if self.staging.was_lost(dst):
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
