"""Removing a moved source: only what was copied, unchanged since it was.

``shutil.move`` ends a copied move with ``rmtree(src)``: a file written or
added in the source while the tree was being copied is deleted without
having been copied. Here every entry of the source is recorded before the
copy begins (its inode, and for what is not a directory its size, mtime and
ctime, all of which any write changes), and after the copy an entry is
removed only if it still matches. A directory is removed only once empty:
something added to it meanwhile keeps it. What stays is returned, for the
caller to report; the source then still exists with only those entries.

Recording *before* the copy is what makes this safe: a change during the
copy, or after it, differs from the record. One window remains, as with
``mv``: a write between the last check and the ``unlink`` itself.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from typing import Any

__all__ = ["Snapshot", "changed_error", "identity", "remove_copied"]

Identity = tuple[int, ...]

#: The reason given in shutil.Error for what is left in the source.
KEPT = "changed or added in the source while it was moved; left in place"


def _identity(st: os.stat_result) -> Identity:
    if stat.S_ISDIR(st.st_mode):
        # Its own removals change a directory's times: only which one it is counts.
        return (stat.S_IFMT(st.st_mode), st.st_dev, st.st_ino)
    return (stat.S_IFMT(st.st_mode), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def identity(path: Any) -> Identity | None:
    """What identifies ``path`` (not followed if a symlink) and changes with any write; None if missing."""
    try:
        return _identity(os.lstat(path))
    except (OSError, ValueError):
        return None


class Snapshot(dict[Any, Identity]):
    """Every entry of a tree, by path, as it was before the copy."""

    @classmethod
    def take(cls, top: Any) -> Snapshot:
        snapshot = cls()
        try:
            snapshot[top] = _identity(os.lstat(top))
        except OSError:
            return snapshot  # the copy meets the same error and raises it
        snapshot._walk(top)
        return snapshot

    def _walk(self, path: Any) -> None:
        try:
            with os.scandir(path) as listing:
                entries = list(listing)
        except OSError:
            return  # an unreadable directory is not copied, and so not removed
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            self[entry.path] = _identity(st)
            if stat.S_ISDIR(st.st_mode):
                self._walk(entry.path)


def remove_copied(top: Any, snapshot: Snapshot) -> list[Any]:
    """Remove what ``snapshot`` recorded and is unchanged; return what was left.

    The first error that stops a removal is raised, as ``shutil.rmtree``
    raises it, leaving the rest in place.
    """
    kept: list[Any] = []
    _remove_directory(top, snapshot, kept)
    return kept


def _remove_directory(path: Any, snapshot: Snapshot, kept: list[Any]) -> bool:
    if identity(path) != snapshot.get(path):
        kept.append(path)
        return False
    with os.scandir(path) as listing:
        entries = list(listing)
    empty = True
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            empty = _remove_directory(entry.path, snapshot, kept) and empty
        elif _identity(st) == snapshot.get(entry.path):
            os.unlink(entry.path)
        else:
            kept.append(entry.path)
            empty = False
    if empty:
        try:
            os.rmdir(path)
        except OSError:
            if not os.path.isdir(path) or not os.listdir(path):
                raise
            # Something was added after the listing.
            kept.extend(os.path.join(path, name) for name in os.listdir(path))
            return False
    return empty


def changed_error(pairs: Iterable[tuple[Any, Any]]) -> shutil.Error:
    """shutil.Error listing ``(source, destination, reason)`` for each entry left in the source."""
    return shutil.Error([(src, dst, KEPT) for src, dst in pairs])
