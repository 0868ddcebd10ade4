"""supports_reflink: a real probe clone, cached per pair of filesystems."""

from __future__ import annotations

import contextlib
import errno
import os
import threading

from ._backend import FileJob
from ._common import StrOrBytesPath, token
from ._engine import transfer
from ._errors import ReflinkNotSupportedError
from ._select import backend

__all__ = ["clear_cache", "supports_reflink"]

_cache: dict[tuple[int, int], bool] = {}
_lock = threading.Lock()

# Errors that mean "cowpath may not create a file here", so no clone can be
# made here by this process: the answer is False, but it is not cached
# (permissions differ between directories of one filesystem).
_CANNOT_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def _directory_of(path: StrOrBytesPath) -> str:
    name = os.fsdecode(os.fspath(path))
    if os.path.isdir(name):
        return name
    parent = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(parent):
        raise FileNotFoundError(errno.ENOENT, "No such directory", name)
    return parent


def supports_reflink(path: StrOrBytesPath, other: StrOrBytesPath | None = None) -> bool:
    """Can files be cloned in directory ``path`` (or from ``path`` to ``other``)?

    ``path`` and ``other`` are directories, or files whose directory is
    meant. The answer comes from a real clone of a small temporary file,
    made exactly as :func:`~cowpath.copyfile` would make it; the temporary
    files are removed before the call returns. The answer is cached for the
    pair of filesystems for the life of the process (see
    :func:`clear_cache`). A directory where this process cannot create files
    answers False. Raises :class:`FileNotFoundError` for a path whose
    directory does not exist.
    """
    first = _directory_of(path)
    second = first if other is None else _directory_of(other)
    key = (os.stat(first).st_dev, os.stat(second).st_dev)
    with _lock:
        known = _cache.get(key)
    if known is not None:
        return known
    answer = _probe(first, second)
    if answer is None:
        return False
    with _lock:
        _cache[key] = answer
    return answer


def clear_cache() -> None:
    """Forget every cached :func:`supports_reflink` answer."""
    with _lock:
        _cache.clear()


def _probe(first: str, second: str) -> bool | None:
    """True or False from a real clone; None when no file could be made."""
    name = f".cowpath-probe-{token()}"
    src = os.path.join(first, name)
    dst = os.path.join(second, name + "-clone")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(src, flags, 0o600)
    except OSError as exc:
        if exc.errno in _CANNOT_WRITE:
            return None
        raise
    try:
        try:
            # One full block, so that btrfs stores it as a real extent and
            # not inline in its metadata.
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        try:
            transfer(backend(), FileJob(src, dst, "always"))
        except ReflinkNotSupportedError:
            return False
        except OSError as exc:
            if exc.errno in _CANNOT_WRITE:
                return None
            raise
        return True
    finally:
        for leftover in (dst, src):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
