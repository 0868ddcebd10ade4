"""Chooses the OS backend, once, when cowpath is first imported."""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Final

from ._api import Backend
from ._portable import PortableBackend

__all__ = ["BACKEND", "PORTABLE", "backend"]


def _choose() -> Backend:
    # Importing a backend module does no I/O; constructing one loads nothing
    # either (native bindings are resolved on first use).
    if sys.platform.startswith("linux"):
        from ._linux import LinuxBackend

        return LinuxBackend()
    if sys.platform == "darwin":
        from ._macos import MacBackend

        return MacBackend()
    if sys.platform == "win32":
        from ._windows import WindowsBackend

        return WindowsBackend()
    return PortableBackend()


BACKEND: Final[Backend] = _choose()
PORTABLE: Final[Backend] = PortableBackend()


def backend() -> Backend:
    """The backend for this call.

    While ``os`` is replaced by a fake (pyfakefs patches the ``os`` name in
    every loaded module), native calls would act on real descriptors that
    happen to share the fake ones' numbers: every copy then takes the
    portable path through the fake instead.
    """
    return BACKEND if isinstance(os, ModuleType) else PORTABLE
