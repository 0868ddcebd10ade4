"""The private directory a new tree is built in, and the names the caller sees instead.

A new tree copied with cowpath's own functions is built inside a directory
``.cowpath-<64 random bits>`` made in the destination (mode 0700, so nobody
else can enter it) and its entries are moved into place when every file is
complete: a process killed midway leaves only that directory, never a
partial file under a destination name. The directory is locked while it
is in use, so that a later copy can tell it from one left by a process that
is gone (:mod:`cowpath._stale`). Nothing of it shows in the names
given to the caller: errors name the final paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable
from typing import Any

from ._stale import LockedDirectory, make_locked

__all__ = ["ErrorTuple", "TreeStaging", "narrow_directory"]

ErrorTuple = tuple[Any, Any, str]


class TreeStaging:
    """The staging directory of one tree copy, once :meth:`make` has made it."""

    def __init__(self) -> None:
        #: Its name inside the destination ("" while there is none), which the walk skips.
        self.name = ""
        self.path: Any = None
        self.final: Any = None
        self._staged: list[tuple[Any, Any]] = []
        self._finals: list[Any] = []
        # Final names of what could not be moved out of the staging directory.
        self.lost: list[str] = []
        # (source, staged path) of the directories to narrow before the moves.
        self.narrow_later: list[tuple[Any, Any]] = []
        self._locked: LockedDirectory | None = None

    def make(self, dst: Any) -> Any:
        """Create the private directory inside ``dst``; return where the tree is to be built.

        Files are created directly under their names in it (no per-file
        staging: measured on XFS and btrfs, an O_TMPFILE file and its link
        cost about a third of a small file's clone). Where it cannot be made,
        ``dst`` itself is returned and each file is staged on its own.
        """
        try:
            self._locked = locked = make_locked(dst)
        except OSError:
            return dst
        self.name = locked.name
        self.path = path = locked.path
        self.final = dst
        self._staged = _prefixes(path)
        text = os.fsdecode(os.fspath(dst))
        self._finals = [text, os.fsencode(text)]
        return path

    def shown(self, path: Any) -> Any:
        """The name the caller knows for a path inside the staging directory."""
        if self.path is None:
            return path
        return self.final_name(path)

    def final_name(self, path: Any) -> Any:
        """:meth:`shown`, also once the tree is moved into place."""
        if not isinstance(path, (str, bytes)):
            return path
        for (staged, staged_sep), final in zip(self._staged, self._finals, strict=True):
            if type(path) is type(staged):
                if path == staged:
                    return final
                if path.startswith(staged_sep):
                    return os.path.join(final, path[len(staged_sep) :])
        return path

    def renamed(self, why: OSError) -> OSError:
        """``why`` with final names in place of staging ones."""
        first, second = self.shown(why.filename), self.shown(why.filename2)
        if first is why.filename and second is why.filename2:
            return why
        new = type(why)(why.errno, why.strerror, first, None, second)
        new.__traceback__ = why.__traceback__
        return new

    def describe(self, why: OSError) -> str:
        """``str(why)`` as shutil would show it, with final names."""
        return str(self.renamed(why))

    def unstage(self, narrow: Callable[[Any, Any], None], failed: Callable[[ErrorTuple], None]) -> None:
        """Move the finished tree from the staging directory into place.

        The directories inside are first narrowed (``narrow``). What cannot
        be moved (a full btrfs may refuse even a rename) is removed, so that
        no private directory stays behind, and reported to ``failed`` under
        its final name: the caller finds the tree as shutil would have left
        it had that part failed. An interrupt (Ctrl-C) during the moves is
        raised once they are done, for the same reason.
        """
        if self.path is None:
            return
        staging, final = self.path, self.final
        interrupted: BaseException | None = None
        for src, path in self.narrow_later:
            narrow(src, path)
        self.narrow_later = []
        names: list[Any] = []
        for _ in range(2):
            try:
                names = os.listdir(staging)
            except OSError as why:
                failed((final, final, self.describe(why)))
                self.lost.append(os.fsdecode(final))
                shutil.rmtree(staging, ignore_errors=True)
            except BaseException as exc:
                interrupted = interrupted or exc
                continue
            break
        for name in names:
            staged, placed = os.path.join(staging, name), os.path.join(final, name)
            try:
                try:
                    os.rename(staged, placed)
                except BaseException as exc:
                    if isinstance(exc, OSError) or not os.path.lexists(staged):
                        raise
                    interrupted = interrupted or exc
                    os.rename(staged, placed)
            except OSError as why:
                failed((placed, placed, self.describe(why)))
                self.lost.append(os.fsdecode(placed))
                if os.path.isdir(staged) and not os.path.islink(staged):
                    shutil.rmtree(staged, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(staged)
        with contextlib.suppress(OSError):
            os.rmdir(staging)
        self.path = None
        if self._locked is not None:
            self._locked.release()
        if interrupted is not None:
            raise interrupted

    def was_lost(self, path: Any) -> bool:
        """Whether ``path`` (a final name) is in a part that could not be moved into place."""
        if not self.lost:
            return False
        text = os.fsdecode(os.fspath(path))
        return any(text == lost or text.startswith(lost + os.sep) for lost in self.lost)


def _prefixes(path: Any) -> list[tuple[Any, Any]]:
    """``path`` and ``path + sep``, as str and as bytes."""
    text = os.fsdecode(os.fspath(path))
    raw = os.fsencode(text)
    return [(text, text + os.sep), (raw, raw + os.sep.encode())]


def narrow_directory(src: Any, dst: Any) -> int | None:
    """Give a new directory no more permission for others than its source has.

    Its own mode comes last, with copystat, after the tree is moved into
    place: until then a 0644 file in a 0700 source directory would be open
    to all in a 0755 copy (shutil has that window). The owner keeps full
    access, which the copy needs. Only permission bits are taken away: the
    setgid bit the kernel gives a directory made in a setgid directory
    (mkdir(2)) stays, so that what is created in it gets its group, as
    with shutil; copystat sets the final bits. Returns the mode it had, if
    it changed.
    """
    try:
        wanted = stat.S_IMODE(os.stat(src).st_mode) | stat.S_IRWXU | ~0o777
        current = stat.S_IMODE(os.stat(dst).st_mode)
        if current & ~wanted:
            os.chmod(dst, current & wanted)
            return current
    except OSError:
        pass  # copystat meets the same error later and reports it
    return None
