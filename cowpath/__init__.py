"""cowpath: shutil-exact file copies that clone (copy-on-write) wherever they can.

On a filesystem that can share extents (btrfs, XFS, bcachefs, OCFS2, NFS 4.2
on Linux; APFS on macOS; ReFS and Dev Drive on Windows) a copy becomes a
clone: instant, and taking no space until one side is written. Everywhere
else the copy is made exactly as :mod:`shutil` makes it.
"""

from __future__ import annotations

from shutil import Error, SameFileError, SpecialFileError

from ._copy import copy, copy2, copyfile, copytree, reflink
from ._errors import ReflinkNotSupportedError
from ._path import CowPath
from ._probe import supports_reflink
from ._report import CopyReport
from ._select import BACKEND as _BACKEND
from ._tree import TreeProgress

__version__ = "0.1.0"

__all__ = [
    "CopyReport",
    "CowPath",
    "Error",
    "ReflinkNotSupportedError",
    "SameFileError",
    "SpecialFileError",
    "TreeProgress",
    "backend_name",
    "copy",
    "copy2",
    "copyfile",
    "copytree",
    "reflink",
    "supports_reflink",
]


def backend_name() -> str:
    """The name of the backend chosen for this OS: "linux", "macos", "windows" or "portable"."""
    return _BACKEND.name
