"""The shutil-shaped functions: copyfile, copy, copy2, copytree, reflink.

Everything here is identical on every OS; only the data step goes to the
backend chosen in :mod:`cowpath._select`.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ._backend import FileJob
from ._common import Metadata, ReflinkMode, StrOrBytesPath, resolve_mode
from ._engine import transfer
from ._metadata import apply_by_path
from ._select import backend
from ._tree import TreeOptions, TreeProgress
from ._treecopy import copy_tree

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = ["copy", "copy2", "copyfile", "copytree", "metadata_of", "reflink"]

#: The type of ``dst``: the copy functions return the destination as they were
#: given it (``str``, ``bytes`` or a path-like object), as shutil's do.
PathT = TypeVar("PathT", bound=StrOrBytesPath)


def _stat(path: StrOrBytesPath) -> os.stat_result | None:
    # As shutil has it: a DirEntry's cached stat, else os.stat (following
    # symlinks); None where it cannot be stat'ed (most likely missing).
    try:
        return path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except (OSError, ValueError):
        return None


def _check_special(path: StrOrBytesPath, st: os.stat_result | None, source: bool) -> None:
    if st is None:
        return  # opening it will say what is wrong
    name = path.path if isinstance(path, os.DirEntry) else path
    if stat.S_ISFIFO(st.st_mode):
        # Opening a FIFO would block until a writer appears.
        raise shutil.SpecialFileError(f"`{name!s}` is a named pipe")
    if source and stat.S_ISSOCK(st.st_mode):
        # shutil would fail opening it (ENXIO); this says what it is.
        raise shutil.SpecialFileError(f"`{name!s}` is a socket")
    if source and stat.S_ISCHR(st.st_mode):
        # A character device (/dev/zero, a terminal) never ends or blocks:
        # shutil would hang. Block devices have an end and are copied.
        raise shutil.SpecialFileError(f"`{name!s}` is a character device")


def _is_link(path: StrOrBytesPath) -> bool:
    return path.is_symlink() if isinstance(path, os.DirEntry) else os.path.islink(path)


def copyfile(
    src: StrOrBytesPath,
    dst: PathT,
    *,
    follow_symlinks: bool = True,
    reflink: ReflinkMode | None = None,
    report: CopyReport | None = None,
    atomic: bool = False,
) -> PathT:
    """Copy the data of ``src`` to ``dst``, as :func:`shutil.copyfile` does, cloning if possible.

    Same signature, return value, exceptions and metadata as
    :func:`shutil.copyfile`: ``dst`` gets the data only (mode 0o666 minus the
    umask if it is created; an existing ``dst`` is rewritten in place and
    keeps its mode, inode and hard links; a symlink ``dst`` is written
    through). Raises :class:`shutil.SameFileError` if both name the same
    file and :class:`shutil.SpecialFileError` for a named pipe; unlike
    shutil, also for a source that is a socket or a character device, which
    shutil would fail on or copy forever (not for a symlink to one that
    ``follow_symlinks=False`` copies as a link).

    A ``dst`` that does not exist appears only when complete: a copy that
    fails, or a process killed midway, leaves nothing under its name.

    Keyword-only extras:

    ``reflink``
        ``"auto"`` (clone where the filesystem can, else copy),
        ``"always"`` (clone or raise :class:`~cowpath.ReflinkNotSupportedError`,
        leaving an existing ``dst`` untouched) or ``"never"`` (copy, with no
        call that may share extents). ``None`` takes ``$COWPATH_REFLINK``,
        else ``"auto"``.
    ``report``
        A :class:`~cowpath.CopyReport` to count the file as cloned or copied.
    ``atomic``
        Replace an existing ``dst`` whole, by renaming a complete new file
        over it, instead of rewriting it in place: readers see the old or
        the new content, never a mix, whatever happens. The file is then a
        new inode: other hard links keep the old content, and the new file
        belongs to the caller unless the caller may give it to the old owner
        (root), and the old file is not another user's in a sticky directory
        such as /tmp (where it may have been planted to receive the copy).
        A symlink ``dst`` is kept and the file it points to is
        replaced. ``copyfile`` keeps the old file's mode, as it does in place.
    """
    _copyfile(src, dst, follow_symlinks, reflink, report, Metadata.NONE, atomic)
    return dst


def _copyfile(
    src: StrOrBytesPath,
    dst: StrOrBytesPath,
    follow_symlinks: bool,
    reflink: ReflinkMode | None,
    report: CopyReport | None,
    metadata: Metadata,
    atomic: bool,
) -> None:
    """copyfile, copy or copy2 (by ``metadata``) once ``dst`` is the file's own name."""
    sys.audit("shutil.copyfile", src, dst)
    mode = resolve_mode(reflink)
    # One stat of each serves shutil's three checks, in shutil's order.
    src_st = _stat(src)
    dst_st = _stat(dst)
    if src_st is not None and dst_st is not None and os.path.samestat(src_st, dst_st):
        raise shutil.SameFileError(f"{src!r} and {dst!r} are the same file")
    # A link that is not followed is copied as a link: only shutil's own
    # check (a named pipe, which it makes through the link) applies then,
    # not cowpath's for sources it would open.
    copy_link = not follow_symlinks and _is_link(src)
    _check_special(src, src_st, not copy_link)
    _check_special(dst, dst_st, False)
    if copy_link:
        link: Any = src  # readlink's AnyStr cannot be inferred from the union
        os.symlink(os.readlink(link), dst)
        apply_by_path(src, dst, metadata, follow_symlinks=False)
        return
    job = FileJob(src, dst, mode, metadata, atomic, report, dst_st, dst_known=True)
    try:
        transfer(backend(), job)
    except IsADirectoryError as exc:
        # shutil's wording when dst names a directory that does not exist
        # (a trailing slash), bpo-43219.
        if exc.filename != os.fspath(src) and not os.path.exists(dst):
            raise FileNotFoundError(f"Directory does not exist: {dst!s}") from exc
        raise


def _into_directory(src: StrOrBytesPath, dst: StrOrBytesPath) -> Any:
    if os.path.isdir(dst):
        return os.path.join(dst, os.path.basename(src))  # type: ignore[arg-type]
    return dst


def copy(
    src: StrOrBytesPath,
    dst: PathT,
    *,
    follow_symlinks: bool = True,
    reflink: ReflinkMode | None = None,
    report: CopyReport | None = None,
    atomic: bool = False,
) -> PathT | str | bytes:
    """Copy data and mode bits, as :func:`shutil.copy` does, cloning if possible.

    ``dst`` may be a directory, in which case the file goes inside it with
    the same base name; returns the path of the new file. The mode bits are
    the source's (a clone carries data only, so this matters: an executable
    stays executable). A new ``dst`` gets its mode before it appears, so its
    data is never readable by anyone the source's mode does not allow.
    ``reflink``, ``report`` and ``atomic`` are as for :func:`copyfile`.
    """
    dst = _into_directory(src, dst)
    _copyfile(src, dst, follow_symlinks, reflink, report, Metadata.MODE, atomic)
    return dst


def copy2(
    src: StrOrBytesPath,
    dst: PathT,
    *,
    follow_symlinks: bool = True,
    reflink: ReflinkMode | None = None,
    report: CopyReport | None = None,
    atomic: bool = False,
) -> PathT | str | bytes:
    """Copy data and all metadata, as :func:`shutil.copy2` does, cloning if possible.

    Like :func:`copy`, with times, mode bits, flags and extended attributes
    as :func:`shutil.copystat` copies them; a new ``dst`` appears with all
    of them already set. ``reflink``, ``report`` and ``atomic`` are as for
    :func:`copyfile`.

    Access time: a clone shares the source's data without reading it, and
    so does a copy of a sparse file that holds no data at all, so the
    source's access time stays as it was, and ``dst`` gets that time.
    shutil reads the source first, which may update its access time (under
    the usual ``relatime`` mount option, when it is older than the
    modification time or a day old), and copies the updated time.
    """
    dst = _into_directory(src, dst)
    _copyfile(src, dst, follow_symlinks, reflink, report, Metadata.STAT, atomic)
    return dst


def copytree(
    src: StrOrBytesPath,
    dst: PathT,
    symlinks: bool = False,
    ignore: Callable[[Any, list[str]], Iterable[str]] | None = None,
    copy_function: Callable[[Any, Any], object] = copy2,
    ignore_dangling_symlinks: bool = False,
    dirs_exist_ok: bool = False,
    *,
    reflink: ReflinkMode | None = None,
    report: CopyReport | None = None,
    workers: int | None = None,
    progress: Callable[[TreeProgress], object] | None = None,
    atomic: bool = False,
) -> PathT:
    """Copy a directory tree, as :func:`shutil.copytree` does, cloning every file it can.

    Same signature, return value, ``ignore``/``symlinks``/
    ``ignore_dangling_symlinks``/``dirs_exist_ok`` handling, order of the
    directory operations, and :class:`shutil.Error` aggregation (in shutil's
    order) as :func:`shutil.copytree`. Directory metadata is copied after
    the directory's contents. The default ``copy_function`` is cowpath's
    :func:`copy2`.

    Keyword-only extras:

    ``reflink``, ``report``, ``atomic``
        As for :func:`copyfile`; they apply when ``copy_function`` is
        cowpath's :func:`copy2` (the default) or :func:`copy`. Every new
        file of the tree appears only when complete.
    ``workers``
        How many copy at once (default: one per core, at least 2, at most
        8; ``1`` copies in the calling thread, in shutil's order). On Linux
        a new tree is copied directory by directory, in the calling thread
        until the walk has found hundreds of files, then by up to
        ``workers`` helper processes, past the GIL; elsewhere, and with
        ``ignore`` or ``dirs_exist_ok``, by threads. A custom
        ``copy_function`` is always called in the calling thread, in
        shutil's order. With ``dirs_exist_ok``, once a destination
        turns out to be a file another name may also reach (a hard link, a
        symlink, a directory met twice), the rest is copied in the calling
        thread, in shutil's order, so that the last write is shutil's.
    ``progress``
        Called with a :class:`~cowpath.TreeProgress` after each file, from
        whichever thread copied it (calls never overlap).
    """
    options = TreeOptions(
        symlinks=symlinks,
        ignore=ignore,
        copy_function=copy_function,
        metadata=metadata_of(copy_function),
        ignore_dangling_symlinks=ignore_dangling_symlinks,
        dirs_exist_ok=dirs_exist_ok,
        mode=resolve_mode(reflink),
        report=report,
        workers=workers,
        progress=progress,
        atomic=atomic,
    )
    result: PathT = copy_tree(src, dst, options)
    return result


def reflink(src: StrOrBytesPath, dst: PathT, *, report: CopyReport | None = None) -> PathT:
    """Clone ``src`` to ``dst`` or raise :class:`~cowpath.ReflinkNotSupportedError`.

    The same as ``copyfile(src, dst, reflink="always")``: the data is shared,
    not copied; ``dst`` is created or rewritten in place; when the clone is
    refused an existing ``dst`` is left exactly as it was. Returns ``dst``.
    """
    return copyfile(src, dst, reflink="always", report=report)


def metadata_of(copy_function: Callable[..., object]) -> Metadata | None:
    """The metadata a tree's copy function gives: cowpath's copy2 or copy, else None.

    None is a custom copy_function, called as shutil calls it, in order, in
    the calling thread.
    """
    if copy_function is copy2:
        return Metadata.STAT
    if copy_function is copy:
        return Metadata.MODE
    return None
