"""The portable backend: no clone call, the data is read and written.

Used where no OS backend applies, and for every call made while ``os`` is
replaced by a fake (pyfakefs), so that the copy goes through the fake.
"""

from __future__ import annotations

import os
import stat

from ._api import FdBackend, StrOrBytesPath

__all__ = ["PortableBackend"]


class PortableBackend(FdBackend):
    """Copies exactly as shutil's portable path does: read, then write."""

    name = "portable"
    can_clone = False
    fd_metadata = False

    def open_existing(self, path: StrOrBytesPath, flags: int) -> int:
        # pyfakefs (6.3 at least) applies os.open's mode argument, 0o777
        # minus the umask by default, to a file that already exists, even
        # when it is only opened for reading: passing the file's own mode
        # keeps the fake source and destination as they were. On a real
        # system the mode is ignored without O_CREAT.
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except (OSError, ValueError):
            mode = 0o777
        return os.open(path, flags, mode)
