"""Public error types and the internal "cannot clone here" signal."""

from __future__ import annotations

import os
from typing import Final

__all__ = ["ReflinkNotSupportedError"]


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

    def __init__(self, errno: int, detail: str = "") -> None:
        super().__init__(errno, detail)
        self.errno: Final = errno
        self.detail: Final = detail

    def to_error(self, src: object, dst: object) -> ReflinkNotSupportedError:
        """Turn the signal into the public error, with both file names."""
        message = os.strerror(self.errno)
        if self.detail:
            message = f"{message} ({self.detail})"
        return ReflinkNotSupportedError(self.errno, message, _name(src), None, _name(dst))


def with_filenames(exc: OSError, src: object, dst: object) -> OSError:
    """Return ``exc`` carrying both file names, as shutil's errors do.

    Errors from calls on descriptors (ioctl, copy_file_range) have no file
    name; a caller needs to know which copy failed.
    """
    if exc.filename is None and exc.errno is not None:
        new = type(exc)(exc.errno, exc.strerror, _name(src), None, _name(dst))
        new.__cause__ = exc.__cause__
        new.__traceback__ = exc.__traceback__
        return new
    return exc


def _name(path: object) -> object:
    """A file name as the os module reports it: path-likes as str or bytes."""
    if isinstance(path, os.PathLike):
        return os.fspath(path)
    return path
