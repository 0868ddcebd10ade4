"""One directory of a tree copy, done whole: listed, made, its files and symlinks copied.

The unit of work of :mod:`cowpath._treecopy`, done by the calling process
itself or by a helper process (:mod:`cowpath._worker`), which then does the
walk too: nothing but the answer crosses the pipe. The answer is one
outcome per entry, by its index in the listing, so that the caller can
give every error its place in shutil's order, recurse into the
subdirectories and settle each file (progress, report, audit events, a
move's record) as it does for the files it copies itself.

Only new trees come here (not ``dirs_exist_ok``): nothing in them exists
beforehand. In a private staging directory each file is created directly
under its name; otherwise each is staged on its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ._backend import FileJob
from ._common import Identity, Metadata, ReflinkMode, identity_of
from ._engine import copy_new_file
from ._report import CopyReport
from ._select import BACKEND
from ._treestage import narrow_directory

__all__ = [
    "CHUNK",
    "FAILED",
    "FILE",
    "HERE",
    "LATER",
    "LINK",
    "SUBDIR",
    "DirAnswer",
    "Outcome",
    "Settings",
    "copy_directory",
    "copy_files",
    "join",
    "prefix",
]

# What became of one entry: (tag, index in the listing, name, a, b).
FILE: Final = 0  # copied: a = its bytes, b = the source's identity before it was read (or None)
LINK: Final = 1  # a symlink recreated: a = its identity before (or None)
SUBDIR: Final = 2  # a directory, for the caller to schedule
HERE: Final = 3  # the caller copies it itself, by the general path: a = whether it is a plain file
FAILED: Final = 4  # a = the OSError; b = whether it was a file (counted in progress)
LATER: Final = 5  # a file of a large directory, left to be copied as part of another batch

#: Files of one directory copied in one piece of work; the rest are handed back.
CHUNK: Final = 256

Outcome = tuple[int, int, Any, Any, Any]


class Settings(NamedTuple):
    """How every entry is copied (sent to helpers with each batch)."""

    mode: ReflinkMode
    metadata: Metadata
    symlinks: bool
    with_stat: bool
    # Inside a private staging directory: files created under their names,
    # directories narrowed by the caller before the tree is moved into place.
    direct: bool
    # The staging directory's name, never copied into itself.
    skip: Any


class DirAnswer(NamedTuple):
    """A directory's result: the error that stopped it, if any, its identity, and its entries' outcomes."""

    error: OSError | None
    #: :func:`~cowpath._common.identity_of` its lstat, taken before it was listed (if ``with_stat``).
    identity: Identity | None
    outcomes: list[Outcome]


def join(directory: Any, name: Any) -> Any:
    """``os.path.join(directory, name)`` for POSIX paths, without its per-call cost."""
    sep: Any = b"/" if isinstance(directory, bytes) else "/"
    return directory + name if directory.endswith(sep) else directory + sep + name


def prefix(directory: Any) -> Any:
    """What :func:`join` puts before a name: ``prefix(d) + name == join(d, name)``, for a loop over names."""
    return join(directory, directory[:0])


def _seen(job: FileJob) -> Identity | None:
    """The identity of a copied file's source, from its ``fstat`` before its data was read."""
    return None if job.src_st is None else identity_of(job.src_st)


def copy_directory(
    settings: Settings,
    src: Any,
    dst: Any,
    report: CopyReport | None,
    stopping: Callable[[], bool],
    each: Callable[[Outcome], object] | None = None,
) -> DirAnswer:
    """List ``src``, make ``dst``, copy its first :data:`CHUNK` files and its symlinks.

    As shutil's ``copytree`` does for a subdirectory: the listing first (a
    failure there, or making ``dst``, is the directory's error), then each
    entry. Subdirectories, and files past the first :data:`CHUNK`, are
    handed back. ``stopping`` is asked before each file: the answer then
    covers what was done. ``each``, if given, is told of each file copied
    (or failed) and each subdirectory at once, instead of their outcomes
    being in the answer.
    """
    identity = None
    try:
        if settings.with_stat:
            identity = identity_of(os.lstat(src))
        with os.scandir(src) as listing:
            entries = list(listing)
        os.mkdir(dst)
    except OSError as why:
        return DirAnswer(why, identity, [])
    if not settings.direct:
        narrow_directory(src, dst)
    return DirAnswer(None, identity, copy_entries(settings, dst, entries, report, stopping, each))


def copy_entries(
    settings: Settings,
    dst: Any,
    entries: list[os.DirEntry[Any]],
    report: CopyReport | None,
    stopping: Callable[[], bool],
    each: Callable[[Outcome], object] | None = None,
) -> list[Outcome]:
    """The outcome of each entry of a listing, copied into the existing directory ``dst``."""
    outcomes: list[Outcome] = []
    files = 0
    mode, metadata, with_stat, direct = settings.mode, settings.metadata, settings.with_stat, settings.direct
    dst_prefix = prefix(dst)
    for index, entry in enumerate(entries):
        name = entry.name
        if name == settings.skip:
            continue
        dstname = dst_prefix + name
        plain = False
        try:
            if entry.is_symlink():
                if not settings.symlinks:
                    # Followed, as shutil follows it: the caller decides how.
                    outcomes.append((HERE, index, name, False, None))
                    continue
                before = identity_of(entry.stat(follow_symlinks=False)) if with_stat else None
                os.symlink(os.readlink(entry.path), dstname)
                shutil.copystat(entry, dstname, follow_symlinks=False)
                outcomes.append((LINK, index, name, before, None))
            elif entry.is_dir():
                if each is None:
                    outcomes.append((SUBDIR, index, name, None, None))
                else:
                    each((SUBDIR, index, name, None, None))
            else:
                plain = entry.is_file(follow_symlinks=False)
                if not plain:
                    outcomes.append((HERE, index, name, False, None))
                elif files >= CHUNK:
                    outcomes.append((LATER, index, name, None, None))
                elif stopping():
                    break
                else:
                    files += 1
                    job = FileJob(entry.path, dstname, mode, metadata, report=report, direct=direct)
                    if not copy_new_file(BACKEND, job):
                        outcomes.append((HERE, index, name, True, None))
                    elif each is None:
                        outcomes.append((FILE, index, name, job.nbytes, _seen(job) if with_stat else None))
                    else:
                        each((FILE, index, name, job.nbytes, _seen(job) if with_stat else None))
        except OSError as why:
            if each is not None and plain:
                each((FAILED, index, name, why, plain))
            else:
                outcomes.append((FAILED, index, name, why, plain))
    return outcomes


def copy_files(
    settings: Settings,
    jobs: list[tuple[Any, Any]],
    report: CopyReport | None,
    stopping: Callable[[], bool],
) -> list[Outcome]:
    """Copy plain files handed back by :func:`copy_directory`; outcomes indexed by place in ``jobs``."""
    outcomes: list[Outcome] = []
    for index, (src, dst) in enumerate(jobs):
        if stopping():
            break
        job = FileJob(src, dst, settings.mode, settings.metadata, report=report, direct=settings.direct)
        try:
            if copy_new_file(BACKEND, job):
                outcomes.append((FILE, index, None, job.nbytes, _seen(job) if settings.with_stat else None))
            else:
                outcomes.append((HERE, index, None, True, None))
        except OSError as why:
            outcomes.append((FAILED, index, None, why, True))
    return outcomes
