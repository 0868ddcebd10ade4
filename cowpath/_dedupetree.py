"""Finding identical files in trees and sharing their storage: what ``cowpath dedupe`` does.

The work is arranged to read as little as possible, in disk order. Files
are grouped by filesystem and size (a stat each, no data read); a group is
split by a cheap partial check, three blocks of each file
(:func:`~cowpath._dedupe.sample`); then the kernel's own comparison in
``FIDEDUPERANGE`` is the full check: it compares both files under lock and
shares only what is equal. A destination it finds different starts a group
of its own. The kernel reads a missing page on its own and waits for it,
so a reader thread works one window of
:data:`~cowpath._deduperead.WINDOW` bytes ahead of the comparisons: it
makes the partial check of the window's files, then reads the files that
passed into the page cache, both in disk order, and keeps them mapped
until they are compared. No file's data is hashed, and no byte is read
twice from disk. ``dry_run`` compares the files itself
instead (the kernel call would change the storage).

Symlinks are never followed; hard links of one inode count once; files
that already share all their blocks with the group's first file are left
alone; whatever cannot be read, changes meanwhile or sits on a filesystem
that cannot dedupe is reported and skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Union

from ._backend import Backend
from ._dedupe import MAX_DESTINATIONS, open_quietly, read_at, sample, sample_ranges, share
from ._deduperead import Prefetch, place, read_ahead, windows_of
from ._errors import CannotClone
from ._extents import physical_overlap, within
from ._pool import TreeProgress
from ._select import backend

__all__ = ["Found", "Group", "Summary", "dedupe_paths", "walk"]

Name = Union[str, bytes]  # noqa: UP007 - a runtime alias, and Python 3.10 has no `type` statement
_READ: Final = 1024 * 1024
#: Files opened ahead of the partial check, their sampled blocks already on their way from the disk.
SAMPLES_AHEAD: Final = 32


@dataclass(frozen=True)
class Found:
    """A regular file the walk found, with its ``lstat``."""

    path: Name
    st: os.stat_result


@dataclass
class Group:
    """Files found identical: ``dups`` now share (or, in a dry run, would share) ``src``'s storage."""

    src: Name
    size: int
    dups: list[Name] = field(default_factory=list)


@dataclass
class Summary:
    """What a run found and did."""

    files_examined: int = 0
    groups: list[Group] = field(default_factory=list)
    files_deduped: int = 0
    bytes_deduped: int = 0
    already_shared: int = 0
    failures: list[tuple[Name, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, path: Name, why: str) -> None:
        with self._lock:
            self.failures.append((path, why))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def walk(paths: Iterable[Name], recursive: bool, summary: Summary) -> Iterator[Found]:
    """Every regular file named or (with ``recursive``) below the paths; symlinks never followed.

    A directory named without ``recursive`` gives the files directly in it,
    as jdupes does.
    """
    for top in paths:
        try:
            st = os.lstat(top)
        except OSError as exc:
            summary.fail(top, _reason(exc))
            continue
        if stat.S_ISREG(st.st_mode):
            yield Found(top, st)
        elif stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(top, recursive, summary)


def _walk_dir(top: Name, recursive: bool, summary: Summary) -> Iterator[Found]:
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries: list[os.DirEntry[Any]] = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            summary.fail(directory, _reason(exc))
            continue
        subdirs = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                summary.fail(entry.path, _reason(exc))
                continue
            if stat.S_ISREG(st.st_mode):
                yield Found(entry.path, st)
            elif recursive and stat.S_ISDIR(st.st_mode):
                subdirs.append(entry.path)
        pending.extend(reversed(subdirs))


def _size_groups(found: Iterable[Found], min_size: int, summary: Summary) -> list[list[Found]]:
    """Files of one filesystem and size, hard links of one inode counted once; only groups of two or more."""
    inodes: set[tuple[int, int]] = set()
    by_size: dict[tuple[int, int], list[Found]] = defaultdict(list)
    for item in found:
        summary.files_examined += 1
        key = (item.st.st_dev, item.st.st_ino)
        if key in inodes or item.st.st_size < max(min_size, 1):
            continue
        inodes.add(key)
        by_size[(item.st.st_dev, item.st.st_size)].append(item)
    return [group for group in by_size.values() if len(group) > 1]


class _Open:
    """A group member opened for the kernel, checked against what the walk saw."""

    def __init__(self, item: Found) -> None:
        self.item = item
        self.fd = open_quietly(item.path, follow=False)
        try:
            now = os.fstat(self.fd)
            if not _same_file(item.st, now):
                raise _Changed
        except BaseException:
            os.close(self.fd)
            raise

    def changed(self) -> bool:
        return not _same_file(self.item.st, os.fstat(self.fd))

    def close(self) -> None:
        os.close(self.fd)


class _Changed(Exception):
    """The file is no longer what the walk found."""


def _same_file(before: os.stat_result, now: os.stat_result) -> bool:
    return (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) == (
        now.st_dev,
        now.st_ino,
        now.st_size,
        now.st_mtime_ns,
    )


CHANGED: Final = "changed during the run; left as it is"


class _Run:
    """One ``cowpath dedupe`` run over size groups."""

    def __init__(
        self, chosen: Backend, summary: Summary, dry_run: bool, progress: Callable[[int, int], None]
    ) -> None:
        self.chosen = chosen
        self.summary = summary
        self.dry_run = dry_run
        self.progress = progress
        self.refused: dict[int, str] = {}  # st_dev -> why that filesystem cannot dedupe

    def split(self, groups: list[list[Found]]) -> tuple[list[list[Found]], list[Found]]:
        """The partial check of every member, read in disk order: parts of two or more files, and the rest.

        Reading the small samples file after file in disk order keeps the
        disk's own read-ahead useful; group by group they are seeks. Runs
        in the reader thread, a window ahead of the comparisons (for files
        of up to :data:`~cowpath._deduperead.WHOLE_SAMPLE` bytes, once they
        have been read whole into the page cache).
        """
        samples: dict[int, bytes] = {}
        following = iter(sorted((item for group in groups for item in group), key=place))
        # The next files, opened, their blocks on their way (or why they could not be opened).
        ahead: deque[tuple[Found, _Open | Exception]] = deque()

        def advance() -> bool:
            item = next(following, None)
            if item is None:
                return False
            try:
                opened = _Open(item)
            except (_Changed, OSError) as exc:
                ahead.append((item, exc))
                return True
            for at, length in sample_ranges(item.st.st_size):
                read_ahead(opened.fd, length, at)
            ahead.append((item, opened))
            return True

        try:
            while len(ahead) < SAMPLES_AHEAD and advance():
                pass
            while ahead:
                item, opened = ahead.popleft()
                advance()
                if isinstance(opened, _Changed):
                    self.summary.fail(item.path, CHANGED)
                elif isinstance(opened, OSError):
                    self.summary.fail(item.path, _reason(opened))
                elif isinstance(opened, _Open):
                    try:
                        samples[id(item)] = sample(opened.fd, item.st.st_size)
                    except OSError as exc:
                        self.summary.fail(item.path, _reason(exc))
                    finally:
                        opened.close()
        finally:
            for _, left in ahead:
                if isinstance(left, _Open):
                    left.close()
        parts: list[list[Found]] = []
        alone = []
        for group in groups:
            split: dict[bytes, list[Found]] = defaultdict(list)
            for item in group:
                key = samples.get(id(item))
                if key is None:
                    alone.append(item)
                else:
                    split[key].append(item)
            for part in split.values():
                if len(part) > 1:
                    parts.append(part)
                else:
                    alone += part
        return parts, alone

    def part(self, members: list[Found], prefetched: bool) -> None:
        """Dedupe a part onto its first member; a member found different starts the next round."""
        rest = members
        while len(rest) > 1:
            rest = self._one_source(rest[0], rest[1:], prefetched)
        self.progress(len(members), sum(item.st.st_size for item in members))

    def _one_source(self, src: Found, dups: list[Found], prefetched: bool) -> list[Found]:
        """Dedupe ``dups`` onto ``src`` in batches; return those found different."""
        different: list[Found] = []
        group = Group(src.path, src.st.st_size)
        for first in range(0, len(dups), MAX_DESTINATIONS):
            different += self._batch(src, dups[first : first + MAX_DESTINATIONS], group, prefetched)
        if group.dups:
            with self.summary._lock:
                self.summary.groups.append(group)
        return different

    def _batch(self, src: Found, dups: list[Found], group: Group, prefetched: bool) -> list[Found]:
        why = self.refused.get(src.st.st_dev)
        if why is not None:
            for item in (src, *dups):
                self.summary.fail(item.path, why)
            return []
        try:
            source = _Open(src)
        except _Changed:
            self.summary.fail(src.path, CHANGED)
            return dups
        except OSError as exc:
            self.summary.fail(src.path, _reason(exc))
            return dups
        try:
            return self._onto(source, dups, group, prefetched)
        finally:
            source.close()

    def _onto(self, source: _Open, dups: list[Found], group: Group, prefetched: bool) -> list[Found]:
        opened: list[_Open] = []
        try:
            for item in dups:
                try:
                    opened.append(_Open(item))
                except _Changed:
                    self.summary.fail(item.path, CHANGED)
                except OSError as exc:
                    self.summary.fail(item.path, _reason(exc))
            todo = self._not_yet_shared(source, opened)
            if not todo:
                return []
            if self.dry_run:
                return self._compare(source, todo, group)
            return self._share(source, todo, group, prefetched)
        finally:
            for member in opened:
                member.close()

    def _not_yet_shared(self, source: _Open, opened: list[_Open]) -> list[_Open]:
        """The members whose data does not yet all share the source's blocks."""
        size = source.item.st.st_size
        try:
            src_map = self.chosen.extents(source.fd)
        except (CannotClone, OSError):
            return opened  # no extent map here: the dedupe call answers for itself
        if any(e.has("inline") for e in src_map):
            return []  # btrfs keeps this size in the metadata: it cannot be shared
        if not any(e.has("shared") for e in src_map):
            # No other file references any of the source's blocks: none of
            # these can share them yet, and their maps need not be read.
            return opened
        todo = []
        for item in opened:
            try:
                mine = within(self.chosen.extents(item.fd), size)
                if all(e.sharable for e in mine) and physical_overlap(src_map, mine) == sum(
                    e.length for e in mine
                ):
                    with self.summary._lock:
                        self.summary.already_shared += 1
                    continue
            except (CannotClone, OSError):
                pass
            todo.append(item)
        return todo

    def _share(self, source: _Open, todo: list[_Open], group: Group, prefetched: bool) -> list[Found]:
        size = source.item.st.st_size
        if not prefetched:
            for item in (source, *todo):
                read_ahead(item.fd, size)
        try:
            outcomes = share(self.chosen, source.fd, size, [item.fd for item in todo])
        except CannotClone as signal:
            why = os.strerror(signal.errno)
            if signal.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS):
                why = f"{why} (this filesystem cannot share identical data)"
                self.refused[source.item.st.st_dev] = why
            for item in (source, *todo):
                self.summary.fail(item.item.path, why)
            return []
        except OSError as exc:
            for item in (source, *todo):
                self.summary.fail(item.item.path, _reason(exc))
            return []
        different = []
        source_changed = source.changed()
        for item, outcome in zip(todo, outcomes, strict=True):
            if outcome.differs:
                different.append(item.item)
            elif outcome.error:
                self.summary.fail(item.item.path, os.strerror(outcome.error))
            elif source_changed or item.changed():
                # The kernel compared under lock: whatever it shared was
                # identical at that moment; the writer's data is intact.
                self.summary.fail(item.item.path, CHANGED)
            elif outcome.deduped:
                group.dups.append(item.item.path)
                with self.summary._lock:
                    self.summary.files_deduped += 1
                    self.summary.bytes_deduped += outcome.deduped
        return different

    def _compare(self, source: _Open, todo: list[_Open], group: Group) -> list[Found]:
        """Dry run: compare the bytes here, as the kernel would."""
        different = []
        for item in todo:
            if _equal(source.fd, item.fd, source.item.st.st_size):
                group.dups.append(item.item.path)
                with self.summary._lock:
                    self.summary.files_deduped += 1
                    self.summary.bytes_deduped += source.item.st.st_size
            else:
                different.append(item.item)
        return different


def _equal(a: int, b: int, size: int) -> bool:
    offset = 0
    while offset < size:
        chunk = read_at(a, _READ, offset)
        if not chunk or chunk != read_at(b, _READ, offset):
            return False
        offset += len(chunk)
    return True


def dedupe_paths(
    paths: Iterable[Name],
    *,
    recursive: bool = False,
    min_size: int = 1,
    dry_run: bool = False,
    progress: Callable[[TreeProgress], None] | None = None,
) -> Summary:
    """Find identical regular files under ``paths`` and share their storage; see the module docstring."""
    summary = Summary()
    groups = _size_groups(walk(paths, recursive, summary), min_size, summary)
    total = sum(item.st.st_size for group in groups for item in group)
    files = sum(len(group) for group in groups)
    done = [0, 0]

    def advance(nfiles: int, nbytes: int) -> None:
        done[0] += nfiles
        done[1] += nbytes
        if progress is not None:
            progress(TreeProgress(done[0], done[1], files, total, False))

    chosen = backend()
    run = _Run(chosen, summary, dry_run, advance)
    # Where the OS has no dedupe call, or a filesystem has refused it, the
    # files are not read ahead: nothing will compare them.
    can_dedupe = dry_run or type(chosen).dedupe is not Backend.dedupe
    windows = windows_of(groups)
    reader = Prefetch(windows, run.split, lambda item: can_dedupe and item.st.st_dev not in run.refused)
    try:
        for index in range(len(windows)):
            for parts, alone, cached in reader.wait(index):
                advance(len(alone), sum(item.st.st_size for item in alone))
                for part in parts:
                    run.part(part, prefetched=cached)
            reader.next()
    finally:
        reader.stop()
    return summary
