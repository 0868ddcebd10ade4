"""copytree's entry point, and the engine that copies a new tree directory by directory.

A new tree copied with cowpath's own functions (no ``ignore``, no
``dirs_exist_ok``) is copied one directory at a time
(:mod:`cowpath._dirwork`): each is listed, made, and has its files and
symlinks copied in one piece of work, which hands back its subdirectories.
The calling process does that work itself, in one thread, until the walk
has found :data:`cowpath._procs.MIN_FILES` files; then helper processes
start and take the pieces, walk included, each in a process of its own:
no GIL is shared, and nothing crosses a pipe but a directory's two names
and one answer. The caller settles every answer: errors get their place in
shutil's order (each entry's path of indices from the top), progress, the
report, audit events and a move's record happen in the calling process,
and directory metadata is copied deepest first when everything is done.

Other trees, and trees on a substituted backend (pyfakefs), are copied by
:mod:`cowpath._tree`'s walk, with threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import select
import shutil
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

from . import _procs
from ._dirwork import (
    CHUNK,
    FAILED,
    FILE,
    HERE,
    LATER,
    LINK,
    SUBDIR,
    DirAnswer,
    Outcome,
    Settings,
    copy_directory,
    copy_entries,
    copy_files,
    join,
    prefix,
)
from ._pool import FileSlot
from ._select import BACKEND, backend
from ._stale import clean_quietly
from ._tree import TreeOptions, TreeProgress, _Tree, default_workers
from ._worker import FATAL, TREE

__all__ = ["copy_tree"]

# The benchmark turns it off to measure the threaded walk alone.
BY_DIRECTORY = True
# Sorts after every entry of a directory: its own metadata comes last.
_LAST: Final = sys.maxsize
# Pieces of work sent to a helper at once, at most.
_SEND: Final = 8

Key = tuple[int, ...]
# ("dir", key, parent source, parent destination, name, the source as shutil names it or None)
# or ("files", key of their directory, source, destination, [(index, name), ...], None).
Item = tuple[str, Key, Any, Any, Any, Any]


def _never() -> bool:
    return False


class DirTree(_Tree):
    """One new tree, copied directory by directory, by this process or by helpers."""

    def __init__(self, options: TreeOptions, workers: int) -> None:
        # The base's pool copies what is settled here (in this thread).
        super().__init__(options, 1)
        self.helper_count = workers
        self.threshold = _procs.threshold()
        self.queue: deque[Item] = deque()
        self.busy: dict[_procs.Helper, list[Item]] = {}
        self.running: _procs.Helpers | None = None
        self.found = 0
        self.settings: Settings | None = None
        # Each file's progress is passed on when the next one is done, the
        # last once the whole tree is listed (so it alone says so).
        self.held: TreeProgress | None = None
        # The item of each directory made.
        self.records: list[Item] = []
        # The piece of work this process is doing.
        self.current: list[Item] = []
        # The last directory listed again for the DirEntry of an entry copied here.
        self.listed: tuple[Any, dict[Any, os.DirEntry[Any]]] | None = None
        # No progress to report and no record to keep: a file copied is
        # settled by its audit event alone.
        self.quick = options.progress is None and options.copied is None

    # -- the walk ------------------------------------------------------------------

    def walk(self, src: Any, dst: Any, entries: list[os.DirEntry[Any]], root: bool = False) -> None:
        os.makedirs(dst)
        shown = dst
        dst = self.staging.make(dst)
        self.narrow(src, shown)
        assert self.metadata is not None
        self.settings = settings = Settings(
            self.mode,
            self.metadata,
            self.symlinks,
            self.copied is not None,
            self.staging.path is not None,
            self.staging.name or None,
        )
        top, made = os.fspath(src), os.fspath(dst)
        subdirs: list[Item] = []
        each = functools.partial(self.settle_one, (), top, made, subdirs)
        outcomes = copy_entries(settings, made, entries, self.report, _never, each)
        entries.clear()  # not needed any more: a large directory's listing is let go now
        self.settle_entries((), top, made, outcomes, subdirs)
        try:
            self.run()
        finally:
            self.stop_helpers()
        if self.held is not None:
            held, self.held = self.held, None
            assert self.pool.progress is not None
            self.pool.progress(dataclasses.replace(held, scanning=False))
        self.dirs.append(((_LAST,), src, shown))

    def late_failure(self, error: Any) -> None:
        self.errors.append(((_LAST, _LAST), error))

    def unstage(self) -> None:
        # Directories in hand when the copy ended are narrowed too (nothing happens to one not made).
        for item in self.in_hand():
            kind, _, src, dst, name, _ = item
            if kind == "dir" and self.staging.path is not None:
                self.staging.narrow_later.append((join(src, name), join(dst, name)))
        if self.staging.path is not None:
            for _, _, src, dst, name, _ in self.records:
                self.narrow(join(src, name), join(dst, name))
        super().unstage()

    def in_hand(self) -> list[Item]:
        return [*self.current, *(item for items in self.busy.values() for item in items)]

    def dir_records(self) -> Iterable[tuple[Any, Any, Any]]:
        # Deepest first: a directory's place in the walk sorts before its subdirectories'.
        self.records.sort(key=lambda record: record[1], reverse=True)
        final_name = self.staging.final_name
        for _, key, src, dst, name, srcobj in self.records:
            yield (*key, _LAST), srcobj or join(src, name), final_name(join(dst, name))
        yield from self.dirs

    # -- handing out the work ----------------------------------------------------------

    def run(self) -> None:
        queue = self.queue
        while queue or self.busy:
            if self.running is None and queue and self.found >= self.threshold:
                self.running = _procs.Helpers()
                self.running.start(self.helper_count)
            running = self.running
            while queue and running is not None:
                helper = running.take()
                if helper is None:
                    break
                self.send(helper)
            if queue and (running is None or any(not h.ready and not h.dead for h in running.helpers)):
                # No helper can take it yet: this process does it meanwhile.
                self.do_here(queue.pop())
            elif self.busy:
                self.wait()
            elif queue:
                self.do_here(queue.pop())  # every helper is gone

    def dispatched(self, item: Item) -> tuple[Any, ...]:
        """What a helper is sent of ``item``."""
        kind, _, src, dst, names, _ = item
        if kind == "dir":
            return (kind, join(src, names), join(dst, names))
        return (kind, [(join(src, name), join(dst, name)) for _, name in names], None)

    def send(self, helper: _procs.Helper) -> None:
        count = max(1, min(_SEND, len(self.queue) // (2 * self.helper_count)))
        items = [self.queue.pop() for _ in range(count)]
        assert self.settings is not None
        message = (TREE, tuple(self.settings), self.report is not None, [self.dispatched(i) for i in items])
        if not helper.send(message):
            self.queue.extend(reversed(items))
            return
        self.busy[helper] = items

    def wait(self) -> None:
        by_fd = {helper.from_fd: helper for helper in self.busy}
        readable, _, _ = select.select(list(by_fd), [], [])
        for fd in readable:
            helper = by_fd[fd]
            items = self.busy.pop(helper)
            answer = helper.answer()
            if answer is None:
                self.redo(items)
                continue
            assert self.running is not None
            self.running.give_back(helper)
            counts, answers = answer
            if counts is not None:
                self.remote_counts(counts)
            for item, result in zip(items, answers, strict=False):
                self.settle(item, result)
            if len(answers) < len(items):
                self.redo(items[len(answers) :])

    def redo(self, items: list[Item]) -> None:
        """Work a helper did not answer for: whatever it left is removed, and it is done again."""
        for kind, _, _, dst, names, _ in items:
            if kind == "dir":
                shutil.rmtree(join(dst, names), ignore_errors=True)
            else:
                for _, name in names:
                    with contextlib.suppress(OSError):
                        os.unlink(join(dst, name))
        self.queue.extend(items)

    def do_here(self, item: Item) -> None:
        assert self.settings is not None
        kind, key = item[:2]
        work = self.dispatched(item)
        self.current = [item]
        subdirs: list[Item] = []
        if kind == "dir":
            each = functools.partial(self.settle_one, key, work[1], work[2], subdirs)
            result: Any = copy_directory(self.settings, work[1], work[2], self.report, _never, each)
        else:
            result = copy_files(self.settings, work[1], self.report, _never)
        self.current = []
        self.settle(item, result, subdirs)

    def stop_helpers(self) -> None:
        """Stop the helpers (each after the file in hand), wait for their answers, end them."""
        running, self.running = self.running, None
        if running is None:
            return
        for helper in self.busy:
            helper.stop()
        for helper in self.busy:
            helper.answer()
        running.close()

    # -- settling answers --------------------------------------------------------------

    def settle(self, item: Item, result: Any, subdirs: list[Item] | None = None) -> None:
        if isinstance(result, tuple) and not isinstance(result, DirAnswer) and result[0] == FATAL:
            raise result[1]
        kind, key, src, dst, names, srcobj = item
        if kind == "files":
            self.found += len(result)
            src_prefix, dst_prefix = prefix(src), prefix(dst)
            for tag, index, _, first, second in result:
                place, name = names[index]
                if tag == FILE and self.quick:
                    sys.audit("shutil.copyfile", src_prefix + name, dst_prefix + name)
                else:
                    self.settle_file((*key, place), src_prefix + name, dst_prefix + name, tag, first, second)
            return
        answer: DirAnswer = result
        source, target = join(src, names), join(dst, names)
        if self.copied is not None and answer.identity is not None:
            self.copied(source, answer.identity)
        if answer.error is not None:
            self.error(key, source, target, answer.error, raising=False)
            return
        sys.audit("shutil.copytree", srcobj or source, self.staging.shown(target))
        self.settle_entries(key, source, target, answer.outcomes, subdirs)
        # Kept for its metadata at the end (and its narrowing before): the
        # item itself, whose paths are its parent's, shared.
        self.records.append(item)

    def settle_one(self, key: Key, src: Any, dst: Any, subdirs: list[Item] | None, outcome: Outcome) -> None:
        """A file's outcome, or a subdirectory, as soon as this process has met it."""
        tag, index, name, first, second = outcome
        if tag == SUBDIR:
            assert subdirs is not None
            subdirs.append(("dir", (*key, index), src, dst, name, None))
            return
        self.found += 1
        if self.pool.progress is not None:
            self.pool.files_total += 1
        self.settle_file((*key, index), join(src, name), join(dst, name), tag, first, second)

    def settle_entries(
        self, key: Key, src: Any, dst: Any, outcomes: list[Outcome], subdirs: list[Item] | None = None
    ) -> None:
        later: list[tuple[int, Any]] = []
        if subdirs is None:
            subdirs = []
        quick = self.quick
        src_prefix, dst_prefix = prefix(src), prefix(dst)
        for outcome in outcomes:
            tag, index, name, first, second = outcome
            if tag == FILE and quick:
                # All there is to settle of a file copied: its audit event.
                self.found += 1
                sys.audit("shutil.copyfile", src_prefix + name, dst_prefix + name)
            elif tag == SUBDIR:
                subdirs.append(("dir", (*key, index), src, dst, name, None))
            elif tag == LATER:
                later.append((index, name))
            elif tag == LINK:
                if self.copied is not None and first is not None:
                    self.copied(join(src, name), first)
            elif tag == HERE:
                self.here((*key, index), src, dst, name, first, subdirs)
            elif tag == FAILED and not second:
                self.error((*key, index), join(src, name), join(dst, name), first)
            else:
                self.settle_one(key, src, dst, None, outcome)
        if self.pool.progress is not None:
            self.pool.files_total += len(later)
        for start in range(0, len(later), CHUNK):
            subdirs.append(("files", key, src, dst, later[start : start + CHUNK], None))
        # Popped from the end: the first subdirectory is done first.
        self.queue.extend(reversed(subdirs))

    def settle_file(self, key: Key, source: Any, target: Any, tag: int, first: Any, second: Any) -> None:
        nbytes = 0
        if tag == FILE:
            sys.audit("shutil.copyfile", source, target)
            if self.copied is not None and second is not None:
                self.copied(source, second)
            nbytes = first
        elif tag == HERE:
            try:
                nbytes = self.copy_general(FileSlot(0, source, source, target, True))
            except OSError as why:
                self.error(key, source, target, why)
        else:
            self.error(key, source, target, first)
        self.tick(nbytes)

    def tick(self, nbytes: int) -> None:
        pool = self.pool
        if pool.progress is not None:
            pool.files_done += 1
            pool.bytes_done += nbytes
            pool.bytes_total += nbytes
            held, self.held = self.held, pool._snapshot()
            if held is not None:
                pool.progress(held)

    def entry_of(self, src: Any, name: Any) -> os.DirEntry[Any] | None:
        """The DirEntry of ``name`` in ``src`` (listed once per directory, as shutil lists it)."""
        if self.listed is None or self.listed[0] != src:
            entries: dict[Any, os.DirEntry[Any]] = {}
            with contextlib.suppress(OSError), os.scandir(src) as listing:
                entries = {entry.name: entry for entry in listing}
            self.listed = (src, entries)
        return self.listed[1].get(name)

    def here(self, key: Key, src: Any, dst: Any, name: Any, plain: bool, subdirs: list[Item]) -> None:
        """An entry copied in this process as the tree walk copies it: a symlink followed, a special file."""
        source, target = join(src, name), join(dst, name)
        srcobj: Any = self.entry_of(src, name) or source
        try:
            if not plain and os.path.islink(source):
                linkto = os.readlink(source)
                if not os.path.exists(linkto) and self.ignore_dangling_symlinks:
                    return
                # A DirEntry keeps the stat is_dir() takes, as in shutil's walk.
                if srcobj.is_dir() if isinstance(srcobj, os.DirEntry) else os.path.isdir(source):
                    subdirs.append(("dir", key, src, dst, name, srcobj))
                    return
        except OSError as why:
            self.error(key, source, target, why)
            return
        self.found += 1
        if self.pool.progress is not None:
            self.pool.files_total += 1
        try:
            nbytes = self.copy_general(FileSlot(0, srcobj, source, target, plain))
        except OSError as why:
            self.error(key, source, target, why)
            nbytes = 0
        self.tick(nbytes)


def _by_directory(options: TreeOptions) -> bool:
    """Whether a tree is copied directory by directory (:class:`DirTree`)."""
    return (
        BY_DIRECTORY
        and options.metadata is not None
        and options.ignore is None
        and not options.dirs_exist_ok
        and not options.first_error
        and options.dir_metadata
        and options.make_parents
        and _procs.available()
    )


def copy_tree(src: Any, dst: Any, options: TreeOptions) -> Any:
    sys.audit("shutil.copytree", src, dst)
    with os.scandir(src) as listing:
        entries = list(listing)
    workers = options.workers
    if workers is None:
        workers = default_workers()
    elif workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers!r}")
    tree: _Tree
    # With str and bytes mixed, the walk raises shutil's TypeError.
    same_type = type(os.fspath(src)) is type(os.fspath(dst))
    if workers > 1 and same_type and _by_directory(options) and backend() is BACKEND:
        tree = DirTree(options, workers)
    else:
        tree = _Tree(options, workers)
    if options.metadata is not None:
        # Staging left by killed copies, in the directories this copy builds in.
        clean_quietly(os.path.dirname(dst) or os.curdir)
        if options.dirs_exist_ok:
            clean_quietly(dst)
    try:
        tree.walk(src, dst, entries, root=True)
        tree.pool.finish()
    except Exception:
        # An exception from ignore, copy_function or progress: the tree is
        # left as shutil's order leaves it, every file reached copied and
        # the directories whose walk was complete with their metadata; the
        # errors collected so far are dropped, as shutil drops them.
        try:
            tree.pool.drain()
        finally:
            tree.pool.abort()
            with contextlib.suppress(OSError):
                tree.unstage()
        tree.collect()
        raise
    except BaseException:
        # An interrupt (Ctrl-C) stops at once, copying nothing more.
        tree.pool.abort()
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
