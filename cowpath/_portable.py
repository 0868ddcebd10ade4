"""The portable backend: no clone call, the data is read and written.

Used where no OS backend applies, and for every call made while ``os`` is
replaced by a fake (pyfakefs), so that the copy goes through the fake.
"""

from __future__ import annotations

import contextlib
import os
import stat

from ._backend import Backend
from ._common import StrOrBytesPath

__all__ = ["PortableBackend"]


class PortableBackend(Backend):
    """Copies exactly as shutil's portable path does: read, then write."""

    name = "portable"
    fd_metadata = False

    def open(self, path: StrOrBytesPath, flags: int, mode: int = 0o666) -> int:
        # pyfakefs (6.3 at least) applies os.open's mode argument, 0o777
        # minus the umask by default, to a file that already exists, even
        # when it is only opened for reading: passing the file's own mode
        # keeps the fake source and destination as they were. On a real
        # system the mode is ignored without O_CREAT.
        with contextlib.suppress(OSError, ValueError):  # a new file: the mode asked for
            mode = stat.S_IMODE(os.stat(path).st_mode)
        return os.open(path, flags, mode)
