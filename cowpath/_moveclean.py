"""Removing a moved source: only what was copied, unchanged since it was.

``shutil.move`` ends a copied move with ``rmtree(src)``: a file written or
added in the source while the tree was being copied is deleted without
having been copied. Here the tree copy records each entry it copies (its
inode, and for what is not a directory its size, mtime and ctime, all of
which any write changes), from a stat taken *before* the copy read it, and
after the copy an entry is removed only if it still matches. An entry the
copy never reached (added after its directory was listed) has no record
and stays. A directory is removed only once empty: something added to it
meanwhile keeps it. What stays is returned, for the caller to report; the
source then still exists with only those entries.

Recording before each entry's copy is what makes this safe: a change during
the copy, or after it, differs from the record. One window remains, as with
``mv``: a write between the last check and the ``unlink`` itself.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from typing import Any, Final

from ._common import Identity, identity_of

__all__ = ["Record", "changed_error", "identity", "remove_copied"]

#: The reason given in shutil.Error for what is left in the source.
KEPT = "changed or added in the source while it was moved; left in place"


def identity(path: Any) -> Identity | None:
    """What identifies ``path`` (not followed if a symlink) and changes with any write; None if missing."""
    try:
        return identity_of(os.lstat(path))
    except (OSError, ValueError):
        return None


class Record(dict[Any, Identity]):
    """Every entry of a tree copied, by source path: its :func:`~cowpath._common.identity_of` before its copy.

    Filled by the tree copy itself (``TreeOptions.copied`` is the record's
    ``__setitem__``) as it goes, from the stat it takes anyway: a file's is
    the ``fstat`` of the open source before its data is read, so no walk of
    its own is needed. Entries are added from the copying threads; a
    ``dict`` item assignment is atomic.
    """


def remove_copied(top: Any, record: Record) -> list[Any]:
    """Remove what ``record`` holds and is unchanged; return what was left.

    The first error that stops a removal is raised, as ``shutil.rmtree``
    raises it (with the full path as its file name), leaving the rest in
    place. Where directories can be opened and listed by descriptor
    (POSIX), the walk goes by descriptor, as ``shutil.rmtree`` does: each
    entry is looked up relative to its open directory (``fstatat``,
    ``unlinkat``), never through a path that a symlink swapped in could
    redirect, and with one path lookup per entry instead of one per component.
    """
    kept: list[Any] = []
    top = os.fspath(top)
    if _BY_FD:
        _remove_directory_fd(top, top, None, record, kept)
    else:
        _remove_directory(top, record, kept)
    return kept


_BY_FD: Final = {os.open, os.stat, os.unlink, os.rmdir} <= os.supports_dir_fd and os.scandir in os.supports_fd
_OPEN_DIR: Final = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _remove_directory_fd(path: Any, name: Any, parent: int | None, record: Record, kept: list[Any]) -> bool:
    expected = record.get(path)
    try:
        fd = os.open(name, _OPEN_DIR, dir_fd=parent)
    except OSError as exc:
        try:
            now: Identity | None = identity_of(os.stat(name, dir_fd=parent, follow_symlinks=False))
        except OSError:
            now = None
        if now != expected:
            kept.append(path)  # gone, or no longer the directory copied (ELOOP, ENOTDIR)
            return False
        exc.filename = path
        raise
    encode = isinstance(path, bytes)
    empty = True
    try:
        if identity_of(os.fstat(fd)) != expected:
            kept.append(path)
            return False
        with os.scandir(fd) as listing:
            entries = list(listing)
        # os.path.join(path, name), spelled out: this loop runs once per file.
        sep: Any = b"/" if encode else "/"
        prefix = path if path.endswith(sep) else path + sep
        for entry in entries:
            # A listing by descriptor gives str names.
            child = prefix + (os.fsencode(entry.name) if encode else entry.name)
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile, by someone else
            if stat.S_ISDIR(st.st_mode):
                empty = _remove_directory_fd(child, entry.name, fd, record, kept) and empty
            elif identity_of(st) == record.get(child):
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except OSError as exc:
                    exc.filename = child
                    raise
            else:
                kept.append(child)
                empty = False
    finally:
        os.close(fd)
    if empty:
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as exc:
            exc.filename = path
            return _not_empty(path, exc, kept)
    return empty


def _not_empty(path: Any, exc: OSError, kept: list[Any]) -> bool:
    """After a failed rmdir: False, listing what was added after the listing; else raise."""
    if not os.path.isdir(path) or not os.listdir(path):
        raise exc
    kept.extend(os.path.join(path, name) for name in os.listdir(path))
    return False


def _remove_directory(path: Any, record: Record, kept: list[Any]) -> bool:
    # By path, where directories cannot be opened (Windows).
    if identity(path) != record.get(path):
        kept.append(path)
        return False
    with os.scandir(path) as listing:
        entries = list(listing)
    empty = True
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            empty = _remove_directory(entry.path, record, kept) and empty
        elif identity_of(st) == record.get(entry.path):
            os.unlink(entry.path)
        else:
            kept.append(entry.path)
            empty = False
    if empty:
        try:
            os.rmdir(path)
        except OSError as exc:
            return _not_empty(path, exc, kept)
    return empty


def changed_error(pairs: Iterable[tuple[Any, Any]]) -> shutil.Error:
    """shutil.Error listing ``(source, destination, reason)`` for each entry left in the source."""
    return shutil.Error([(src, dst, KEPT) for src, dst in pairs])
