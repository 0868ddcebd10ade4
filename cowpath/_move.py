"""move: shutil.move, cloning where a rename is refused.

``os.rename`` fails with EXDEV between two btrfs subvolumes of one
filesystem and between two bind mounts of one filesystem, although FICLONE
works in both (measured: docs/architecture.md, PLATFORM_NOTES). Where
``shutil.move`` then copies every byte, this clones with cowpath's ``copy2``
and ``copytree``, as GNU ``mv`` does, and removes the source afterwards.

Nothing is lost, whenever the process is killed: a file's copy is named
only when complete (the engine's staging file, ``atomic`` over an existing
one); a tree is built in a locked private directory beside the destination
(:mod:`cowpath._stale`) and renamed into place in one step; the source is
removed only after that, and only what the copy recorded as it copied it,
unchanged since (:mod:`cowpath._moveclean`): the tree is walked once to
copy it and once to remove it, with no walk of its own to record it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import stat
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Union

from ._common import Metadata, ReflinkMode, StrOrBytesPath, identity_of, resolve_mode
from ._copy import _copyfile, copy, copy2, copyfile, metadata_of
from ._moveclean import Record, changed_error, identity, remove_copied
from ._stale import clean_quietly, make_locked
from ._tree import TreeOptions, TreeProgress
from ._treecopy import copy_tree

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = ["move", "move_path", "move_with_progress", "pathlib_tree_options"]

# Python 3.13 stopped treating a symlink to ``dst`` as ``dst`` itself
# (moving the link into the directory instead of renaming over it).
_LINK_IS_NOT_SAME: Final = sys.version_info >= (3, 13)

_Copier = Callable[..., object]
# Copies the tree ``src`` to ``dst``, adding each entry it copies to the record.
_TreeCopier = Callable[[Any, Any, Record], object]
_Report = Union["CopyReport", None]


def _samefile(src: Any, dst: Any) -> bool:
    # shutil's _samefile, for the paths move is given.
    try:
        return os.path.samefile(src, dst)
    except (OSError, ValueError):
        return False


def _basename(path: Any) -> Any:
    # shutil's: the last component even with a trailing slash.
    path = os.fspath(path)
    sep = os.path.sep + (os.path.altsep or "")
    return os.path.basename(path.rstrip(sep))


def _destinsrc(src: Any, dst: Any) -> bool:
    src = os.path.abspath(src)
    dst = os.path.abspath(dst)
    if not src.endswith(os.path.sep):
        src += os.path.sep
    if not dst.endswith(os.path.sep):
        dst += os.path.sep
    return bool(dst.startswith(src))


def _is_immutable(src: Any) -> bool:
    st = os.stat(src)
    flags = getattr(st, "st_flags", None)
    return flags in (stat.UF_IMMUTABLE, stat.SF_IMMUTABLE)


def move(
    src: StrOrBytesPath,
    dst: StrOrBytesPath,
    copy_function: Callable[[Any, Any], object] = copy2,
    *,
    reflink: ReflinkMode | None = None,
    report: CopyReport | None = None,
) -> Any:
    """Move a file or directory tree, as :func:`shutil.move` does, cloning where it cannot rename.

    Same signature, return value, exceptions and results as
    :func:`shutil.move`: if ``dst`` is a directory (or a symlink to one)
    ``src`` is moved inside it, and :class:`shutil.Error` is raised if that
    name exists; :func:`os.rename` is tried first; where it fails (another
    filesystem, and also two btrfs subvolumes or two bind mounts of one
    filesystem, which the kernel refuses to rename between) a symlink is
    recreated, a directory is copied with ``copytree(symlinks=True)`` and a
    file with ``copy_function``, and the source is removed. Returns the
    new path (``None`` in shutil's one case: ``dst`` is a directory and
    the same file as ``src``, renamed onto itself).

    The copies are cowpath's, so they are clones wherever the filesystem
    can share extents (``reflink``, as for :func:`cowpath.copyfile`): a
    move between subvolumes or bind mounts takes no new space and no time
    per byte, as GNU ``mv`` does. A custom ``copy_function`` is called as
    shutil calls it; cowpath's :func:`~cowpath.copy` and
    :func:`~cowpath.copy2` are given ``reflink`` and ``report``.

    Never losing data, where shutil may:

    * the destination appears whole or not at all: a file is written under
      a private name and renamed into place (an existing destination file
      is replaced whole, not rewritten in place; this holds for cowpath's
      own copy functions), a tree is built in a private ``.cowpath-<hex>``
      directory beside the destination and renamed into place in one step.
      Killed at any moment, the move leaves the whole source, the whole
      destination, or both (then the source may be partly removed, with
      the destination whole);
    * the source is removed only after the destination is complete, and
      only what was copied, unchanged since its copy: a file changed after
      it was copied, or added to a directory already copied, stays where it
      is, and :class:`shutil.Error` lists each (``(source, destination,
      reason)``) once the rest is moved;
    * a source that cannot be removed raises the :class:`OSError` shutil
      would, leaving the destination complete.

    ``report``, a :class:`~cowpath.CopyReport`, counts the files cloned,
    copied, and moved by a rename (``files_renamed``, ``bytes_renamed``:
    counting a renamed tree walks it, only when a report is passed).
    """
    return move_with_progress(src, dst, copy_function, resolve_mode(reflink), report, None)


def move_with_progress(
    src: StrOrBytesPath,
    dst: StrOrBytesPath,
    copy_function: _Copier,
    mode: ReflinkMode,
    report: _Report,
    progress: Callable[[TreeProgress], object] | None,
) -> Any:
    """:func:`move`, telling ``progress`` of each file of a tree it copies (the command line's bar)."""
    sys.audit("shutil.move", src, dst)
    real_dst: Any = dst
    if os.path.isdir(dst):
        if _samefile(src, dst) and not (_LINK_IS_NOT_SAME and os.path.islink(src)):
            # A case-insensitive filesystem: the rename changes the case.
            os.rename(src, dst)
            return None
        real_dst = os.path.join(dst, _basename(src))
        if os.path.exists(real_dst):
            raise shutil.Error(f"Destination path '{real_dst!s}' already exists")
    try:
        os.rename(src, real_dst)
    except OSError:
        if os.path.islink(src):
            link: Any = src  # readlink's AnyStr cannot be inferred from the union
            linkto = os.readlink(link)
            os.symlink(linkto, real_dst)
            os.unlink(src)
        elif os.path.isdir(src):
            if _destinsrc(src, dst):
                raise shutil.Error(f"Cannot move a directory '{src!s}' into itself '{dst!s}'.") from None
            if _is_immutable(src) or (
                not os.access(src, os.W_OK) and os.listdir(src) and sys.platform == "darwin"
            ):
                raise PermissionError(
                    f"Cannot move the non-empty directory '{src!s}': Lacking write permission to '{src!s}'."
                ) from None
            # A custom copy_function is given shutil's names, as copytree gives them.
            _move_tree(
                src,
                real_dst,
                lambda s, d, r: _copytree(s, d, copy_function, mode, report, progress, r),
                staged=copy_function is copy2 or copy_function is copy,
                parents=True,
            )
        else:
            _move_file(src, real_dst, copy_function, mode, report)
    else:
        if report is not None:
            _count_renamed(real_dst, report)
    return real_dst


def _copy(
    copy_function: _Copier,
    src: Any,
    dst: Any,
    mode: ReflinkMode,
    report: CopyReport | None,
) -> None:
    if copy_function is copy2 or copy_function is copy:
        # atomic: an existing destination is replaced whole (never half
        # rewritten, were the process killed).
        copy_function(src, dst, reflink=mode, report=report, atomic=True)
    else:
        copy_function(src, dst)


def _move_file(
    src: Any,
    real_dst: Any,
    copy_function: Callable[..., object],
    mode: ReflinkMode,
    report: CopyReport | None,
) -> None:
    before = identity(src)
    _copy(copy_function, src, real_dst, mode, report)
    if before is not None and identity(src) != before:
        raise changed_error([(src, real_dst)])
    os.unlink(src)


def _move_tree(src: Any, real_dst: Any, copier: _TreeCopier, staged: bool, parents: bool) -> None:
    """Copy the tree ``src`` to ``real_dst`` with ``copier``, then remove what was copied.

    With ``staged`` the tree is built in a locked private directory beside
    ``real_dst`` and renamed into place whole; with ``parents`` that
    directory's missing parents are made first, as copytree makes them.
    """
    record = Record()
    with contextlib.suppress(OSError):  # the copy meets the same error and raises it
        record[os.fspath(src)] = identity_of(os.lstat(src))
    parent = os.path.dirname(real_dst) or os.curdir
    locked = None
    if staged and not os.path.lexists(real_dst):
        try:
            if parents:
                os.makedirs(parent, exist_ok=True)
            clean_quietly(parent)
            locked = make_locked(parent)
        except OSError:
            locked = None  # the copy meets the same error and reports it under its own names
    if locked is None:
        copier(src, real_dst, record)
    else:
        staging = os.path.join(locked.path, _basename(real_dst))
        try:
            try:
                copier(src, staging, record)
            except shutil.Error as exc:
                # shutil leaves what it copied in place, and so does this.
                os.rename(staging, real_dst)
                raise shutil.Error(_shown(exc.args[0], staging, real_dst)) from None
            except OSError as exc:
                _rename_in(exc, staging, real_dst)
                raise
            os.rename(staging, real_dst)
        finally:
            with contextlib.suppress(OSError):
                if os.path.lexists(staging):
                    shutil.rmtree(staging)
                os.rmdir(locked.path)
            locked.release()
    kept = remove_copied(src, record)
    if kept:
        raise changed_error([(path, os.path.join(real_dst, os.path.relpath(path, src))) for path in kept])


def _copytree(
    src: Any,
    dst: Any,
    copy_function: _Copier,
    mode: ReflinkMode,
    report: _Report,
    progress: Callable[[TreeProgress], object] | None,
    record: Record,
) -> None:
    # copytree(src, dst, copy_function=..., symlinks=True), with cowpath's
    # copy functions given ``reflink``, ``report`` and ``progress``, telling
    # ``record`` of each entry copied.
    metadata = metadata_of(copy_function)
    ours = metadata is not None
    options = TreeOptions(
        symlinks=True,
        ignore=None,
        copy_function=copy_function,
        metadata=metadata,
        ignore_dangling_symlinks=False,
        dirs_exist_ok=False,
        mode=mode if ours else resolve_mode(None),
        report=report if ours else None,
        workers=None,
        progress=progress if ours else None,
        atomic=False,
        copied=record.__setitem__,
    )
    copy_tree(src, dst, options)


def _shown_path(value: Any, staged: Any, final: Any) -> Any:
    # The staging path holds 64 random bits: any text holding it names the tree there.
    old: Any
    new: Any
    if isinstance(value, bytes):
        old, new = os.fsencode(staged), os.fsencode(final)
    elif isinstance(value, str):
        old, new = os.fsdecode(staged), os.fsdecode(final)
    else:
        return value
    return value.replace(old, new)


def _shown(errors: Any, staged: Any, final: Any) -> Any:
    if not isinstance(errors, list):
        return errors
    return [tuple(_shown_path(part, staged, final) for part in error) for error in errors]


def _rename_in(exc: OSError, staged: Any, final: Any) -> None:
    # The names the caller knows, in place of the staging ones.
    exc.filename = _shown_path(exc.filename, staged, final)
    exc.filename2 = _shown_path(exc.filename2, staged, final)


def _count_renamed(path: Any, report: CopyReport) -> None:
    files = nbytes = 0
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            files, nbytes = 1, st.st_size
        elif stat.S_ISDIR(st.st_mode):
            for dirpath, _, names in os.walk(path):
                for name in names:
                    with contextlib.suppress(OSError):
                        st = os.lstat(os.path.join(dirpath, name))
                        if stat.S_ISREG(st.st_mode):
                            files += 1
                            nbytes += st.st_size
    except OSError:
        return
    report.record_renamed(files, nbytes)


def move_path(source: str, target: str, mode: ReflinkMode, report: _Report) -> None:
    """Python 3.14's ``Path.move`` for ``CowPath``: ``os.replace``, else copy and delete.

    Only EXDEV leads to the copy (pathlib raises every other error of
    ``os.replace``); the copy is ``Path.copy(follow_symlinks=False,
    preserve_metadata=True)``'s, cloning, with the same guarantees as
    :func:`move`: the target appears whole, and the source is removed only
    after it, and only what was copied.
    """
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        if report is not None:
            _count_renamed(target, report)
        return
    if os.path.isdir(source) and not os.path.islink(source):
        options = pathlib_tree_options(False, True, mode, report)
        _move_tree(
            source,
            target,
            lambda s, d, r: copy_tree(s, d, dataclasses.replace(options, copied=r.__setitem__)),
            staged=True,
            parents=False,
        )
        return
    before = identity(source)
    if os.path.islink(source):
        os.symlink(os.readlink(source), target, target_is_directory=os.path.isdir(source))
        shutil.copystat(source, target, follow_symlinks=False)
    else:
        _copyfile(source, target, True, mode, report, Metadata.STAT, True)
    if before is not None and identity(source) != before:
        raise changed_error([(source, target)])
    os.unlink(source)


def pathlib_tree_options(
    follow_symlinks: bool, preserve_metadata: bool, mode: ReflinkMode, report: _Report
) -> TreeOptions:
    """Python 3.14's ``Path.copy`` of a directory: the first error ends it, metadata only if asked."""
    return TreeOptions(
        symlinks=not follow_symlinks,
        ignore=None,
        copy_function=copy2 if preserve_metadata else copyfile,
        metadata=Metadata.STAT if preserve_metadata else Metadata.NONE,
        ignore_dangling_symlinks=False,
        dirs_exist_ok=False,
        mode=mode,
        report=report,
        workers=None,
        progress=None,
        atomic=False,
        first_error=True,
        dir_metadata=preserve_metadata,
        make_parents=False,
    )
