"""cowpath: shutil-exact file copies that clone (copy-on-write) wherever they can.

On a filesystem that can share extents (btrfs, XFS, bcachefs, OCFS2, NFS 4.2
on Linux; APFS on macOS; ReFS and Dev Drive on Windows) a copy becomes a
clone: instant, and taking no space until one side is written. Everywhere
else the copy is made exactly as :mod:`shutil` makes it.
"""

from __future__ import annotations

from shutil import Error, SameFileError, SpecialFileError

from ._copy import copy, copy2, copyfile, copytree, reflink
from ._dedupe import DedupeReport, dedupe, shared_bytes
from ._errors import ReflinkNotSupportedError
from ._move import move
from ._path import CowPath
from ._probe import clear_cache, supports_reflink
from ._report import CopyReport
from ._select import backend as _backend
from ._stale import clean_staging
from ._tree import TreeProgress

__version__ = "0.1.0"

__all__ = [
    "CopyReport",
    "CowPath",
    "DedupeReport",
    "Error",
    "ReflinkNotSupportedError",
    "SameFileError",
    "SpecialFileError",
    "TreeProgress",
    "backend_name",
    "clean_staging",
    "clear_cache",
    "copy",
    "copy2",
    "copyfile",
    "copytree",
    "dedupe",
    "move",
    "reflink",
    "shared_bytes",
    "supports_reflink",
]


def backend_name() -> str:
    """The name of the backend copies use now: "linux", "macos", "windows" or "portable".

    The backend is chosen for the operating system when cowpath is
    imported; while pyfakefs replaces the ``os`` module, copies go through
    the fake with the portable backend, and this says "portable".
    """
    return _backend().name
