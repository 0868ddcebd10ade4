"""The portable backend: no clone call, the data is read and written.

Used where no OS backend applies, and for every call made while ``os`` is
replaced by a fake (pyfakefs), so that the copy goes through the fake.
"""

from __future__ import annotations

from ._api import FdBackend

__all__ = ["PortableBackend"]


class PortableBackend(FdBackend):
    """Copies exactly as shutil's portable path does: read, then write."""

    name = "portable"
    can_clone = False
