"""CowPath: a pathlib.Path whose copies clone."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ._common import Metadata, ReflinkMode, resolve_mode
from ._copy import _copyfile
from ._move import move_path, pathlib_tree_options
from ._treecopy import copy_tree

if TYPE_CHECKING:
    from ._report import CopyReport

__all__ = ["CowPath"]

# Subclass the concrete class: Python 3.10 and 3.11 cannot subclass
# pathlib.Path itself (it has no flavour); 3.12+ can, and either way the
# result is a pathlib.Path, and derived paths are CowPath on every version.
if sys.platform == "win32":
    from pathlib import WindowsPath as _ConcretePath
else:
    from pathlib import PosixPath as _ConcretePath

#: What CowPath's methods take as a target: a str or a str path-like object.
PathArg = Union[str, "os.PathLike[str]"]


def _distinct(source: Path, target: Path) -> None:
    # As Python 3.14's Path.copy: copying onto itself or into itself is refused.
    if source == target:
        message = "Source and target are the same path"
    elif source in target.parents:
        message = "Source path is a parent of target path"
    else:
        return
    raise OSError(errno.EINVAL, message, str(source), None, str(target))


def _ensure_different_files(source: Path, target: Path) -> None:
    # As Python 3.14's Path.move: the same file (by device and inode, links
    # not followed) is refused; a path that cannot be examined is not the same.
    try:
        first, second = os.lstat(source), os.lstat(target)
    except (OSError, ValueError):
        return
    if (first.st_dev, first.st_ino) != (second.st_dev, second.st_ino):
        return
    raise OSError(errno.EINVAL, "Source and target are the same file", str(source), None, str(target))


class CowPath(_ConcretePath):
    """A :class:`pathlib.Path` whose copies and moves clone.

    Every derived path (``/``, ``parent``, ``with_name``, ``iterdir``, ...)
    is a ``CowPath`` too. ``copy``, ``copy_into``, ``move`` and
    ``move_into`` have the signatures of Python 3.14's
    :meth:`pathlib.Path.copy`, :meth:`pathlib.Path.copy_into`,
    :meth:`pathlib.Path.move` and :meth:`pathlib.Path.move_into` and are
    available on every supported Python.
    """

    __slots__ = ()

    def _derive(self, target: PathArg) -> CowPath:
        if isinstance(target, CowPath):
            return target
        return type(self)(target)

    def copy(
        self,
        target: PathArg,
        *,
        follow_symlinks: bool = True,
        preserve_metadata: bool = False,
        reflink: ReflinkMode | None = None,
        report: CopyReport | None = None,
    ) -> CowPath:
        """Copy this file or directory tree to ``target``; return ``target`` as a CowPath.

        Python 3.14's :meth:`pathlib.Path.copy`, cloning every file it can:
        a file is written to ``target`` (replacing an existing file); a
        directory is copied recursively into a new directory ``target``
        (:class:`FileExistsError` if it exists). With ``follow_symlinks``
        false a symlink is recreated rather than followed. With
        ``preserve_metadata`` true, permissions, times, flags and extended
        attributes are copied too. Copying a path onto or into itself raises
        :class:`OSError` (``EINVAL``). ``reflink`` and ``report`` are as for
        :func:`cowpath.copyfile`.
        """
        mode = resolve_mode(reflink)
        destination = self._derive(target)
        _distinct(self, destination)
        _copy_entry(str(self), str(destination), follow_symlinks, preserve_metadata, mode, report)
        return destination

    def copy_into(
        self,
        target_dir: PathArg,
        *,
        follow_symlinks: bool = True,
        preserve_metadata: bool = False,
        reflink: ReflinkMode | None = None,
        report: CopyReport | None = None,
    ) -> CowPath:
        """Copy this file or tree into the existing directory ``target_dir``.

        Python 3.14's :meth:`pathlib.Path.copy_into`: the same as
        ``copy(target_dir / self.name, ...)``; returns the new path.
        """
        name = self.name
        if not name:
            raise ValueError(f"{self!r} has an empty name")
        return self.copy(
            self._derive(target_dir) / name,
            follow_symlinks=follow_symlinks,
            preserve_metadata=preserve_metadata,
            reflink=reflink,
            report=report,
        )

    def move(
        self, target: PathArg, *, reflink: ReflinkMode | None = None, report: CopyReport | None = None
    ) -> CowPath:
        """Move this file or directory tree to ``target``; return the new path as a CowPath.

        Python 3.14's :meth:`pathlib.Path.move`: :func:`os.replace` first
        (an existing file ``target`` is replaced; an existing empty
        directory too, where the OS allows); where that fails with EXDEV
        (another filesystem, and also another btrfs subvolume or bind mount
        of the same one) the file or tree is copied as
        ``copy(target, follow_symlinks=False, preserve_metadata=True)``
        copies it, cloning, and the source is deleted. Moving a path onto
        the same file raises :class:`OSError` (``EINVAL``).

        As :func:`cowpath.move`: the target appears whole, the source is
        removed only after that and only what was copied (what changed
        meanwhile stays, listed in the :class:`shutil.Error` raised).
        ``reflink`` and ``report`` are as for :func:`cowpath.move`.
        """
        destination = self._derive(target)
        _ensure_different_files(self, destination)
        move_path(str(self), str(destination), resolve_mode(reflink), report)
        return destination

    def move_into(
        self, target_dir: PathArg, *, reflink: ReflinkMode | None = None, report: CopyReport | None = None
    ) -> CowPath:
        """Move this file or tree into the existing directory ``target_dir``; return the new path.

        Python 3.14's :meth:`pathlib.Path.move_into`: ``move(target_dir / self.name)``.
        """
        name = self.name
        if not name:
            raise ValueError(f"{self!r} has an empty name")
        return self.move(self._derive(target_dir) / name, reflink=reflink, report=report)

    def reflink_to(
        self,
        target: PathArg,
        *,
        follow_symlinks: bool = True,
        preserve_metadata: bool = False,
        report: CopyReport | None = None,
    ) -> CowPath:
        """Clone this file (or every file of this tree) to ``target``; return ``target``.

        ``self`` is the source and ``target`` the new file, as with
        :meth:`copy` and Python 3.14's ``Path.copy(target)``; note that this
        is the reverse of :meth:`pathlib.Path.symlink_to`, where ``self`` is
        the new link. Raises :class:`~cowpath.ReflinkNotSupportedError` if a
        file cannot be cloned (an existing target file is then untouched).
        It is ``copy(target, reflink="always", ...)``.
        """
        return self.copy(
            target,
            follow_symlinks=follow_symlinks,
            preserve_metadata=preserve_metadata,
            reflink="always",
            report=report,
        )


def _copy_entry(
    source: str,
    target: str,
    follow_symlinks: bool,
    preserve_metadata: bool,
    mode: ReflinkMode,
    report: CopyReport | None,
) -> None:
    # Plain os calls, not pathlib's methods: on Python 3.10, pathlib reaches
    # the os module through an accessor that pyfakefs does not replace, so
    # a copy inside a faked filesystem would otherwise read the real one.
    if not follow_symlinks and os.path.islink(source):
        os.symlink(os.readlink(source), target, target_is_directory=os.path.isdir(source))
        if preserve_metadata:
            shutil.copystat(source, target, follow_symlinks=False)
    elif os.path.isdir(source):
        # The tree engine, as copytree uses it (staging, threads, the fast
        # path), with pathlib's rules: the first error ends the copy and is
        # raised as it is, metadata only with preserve_metadata.
        copy_tree(source, target, pathlib_tree_options(follow_symlinks, preserve_metadata, mode, report))
    else:
        try:
            same = os.path.samestat(os.stat(source), os.stat(target))
        except OSError:
            same = False
        if same:
            raise OSError(errno.EINVAL, "Source and target are the same file", source, None, target)
        metadata = Metadata.STAT if preserve_metadata else Metadata.NONE
        _copyfile(source, target, True, mode, report, metadata, False)
