"""Public error types and the internal "cannot clone here" signal."""

from __future__ import annotations

import os
from typing import Final

__all__ = ["CannotClone", "ReflinkNotSupportedError", "named"]


class ReflinkNotSupportedError(OSError):
    """A clone was required (``reflink="always"``) but cannot be made.

    It is an :class:`OSError` with the errno that the operating system gave
    (for example ``EOPNOTSUPP`` on ext4 or tmpfs, ``EXDEV`` across
    filesystems), ``filename`` set to the source and ``filename2`` to the
    destination, so code that catches :class:`OSError` keeps working.
    Whenever it is raised, an existing destination was left untouched and a
    destination that did not exist before was not created.
    """


class CannotClone(Exception):
    """Raised by a backend while the destination is still untouched.

    It is deliberately *not* an :class:`OSError`: a caller that catches
    ``OSError`` must never mistake "fall back to a copy" for a real failure
    (the same design as CPython's ``shutil._GiveupOnFastCopy``).
    """

    def __init__(self, errno: int, detail: str = "", path_error: bool = False) -> None:
        super().__init__(errno, detail)
        self.errno: Final = errno
        self.detail: Final = detail
        # The destination's name itself is at fault (its directory is
        # missing, the volume read-only): the copy path meets the same error
        # at its own open and reports it as shutil does, in every mode.
        self.path_error: Final = path_error

    def to_error(self, src: object, dst: object) -> ReflinkNotSupportedError:
        """Turn the signal into the public error, with both file names."""
        message = os.strerror(self.errno)
        if self.detail:
            message = f"{message} ({self.detail})"
        return ReflinkNotSupportedError(self.errno, message, _name(src), None, _name(dst))


def named(exc: OSError, src: object, dst: object, private: tuple[object, ...] = ()) -> OSError:
    """``exc`` naming the caller's ``src`` and ``dst``: the one place errors get their file names.

    Errors from calls on descriptors (ioctl, copy_file_range) carry no file
    name, and errors from steps on a private name (a staging file, or
    ``/proc/self/fd/N``) carry a name the caller never saw: both are given
    ``src`` and ``dst``, as shutil's errors have them. An error that names
    one of the caller's files (opening ``src``, creating ``dst``) keeps its
    name, as shutil reports it.
    """
    if exc.errno is None:
        return exc
    filename = exc.filename
    if filename is not None and not _is_private(filename, private):
        return exc
    new = type(exc)(exc.errno, exc.strerror, _name(src), None, _name(dst))
    new.__cause__ = exc.__cause__
    new.__traceback__ = exc.__traceback__
    return new


def _is_private(filename: object, private: tuple[object, ...]) -> bool:
    if isinstance(filename, bytes):
        filename = os.fsdecode(filename)
    if not isinstance(filename, str):
        return False
    if filename.startswith("/proc/self/fd/"):
        return True
    return any(filename == os.fsdecode(path) for path in private if isinstance(path, (str, bytes)))


def _name(path: object) -> object:
    """A file name as the os module reports it: path-likes as str or bytes."""
    if isinstance(path, os.PathLike):
        return os.fspath(path)
    return path
