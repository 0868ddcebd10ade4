"""Chooses the OS backend, once, when cowpath is first imported.

Every cowpath call asks :func:`backend` which backend to use; this module is
the only place that answers, and :func:`use_backend` is the only way to
change the answer (tests run the engine on a fake macOS or Windows backend,
or on a Linux backend with named staging, through it).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Final, TypeVar

from ._backend import Backend
from ._portable import PortableBackend

__all__ = ["BACKEND", "PORTABLE", "backend", "use_backend"]

_B = TypeVar("_B", bound=Backend)


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


# Backends chosen with use_backend, innermost last; they apply to every thread.
_chosen: list[Backend] = []
_chosen_lock = threading.Lock()


def backend() -> Backend:
    """The backend for this call.

    The one given to :func:`use_backend`, if any. Otherwise the OS backend,
    except while ``os`` is replaced by a fake (pyfakefs patches the ``os``
    name in every loaded module): native calls would then act on real
    descriptors that happen to share the fake ones' numbers, so every copy
    takes the portable path through the fake instead.
    """
    if _chosen:
        return _chosen[-1]
    return BACKEND if isinstance(os, ModuleType) else PORTABLE


@contextlib.contextmanager
def use_backend(chosen: _B) -> Iterator[_B]:
    """Run every cowpath call, in every thread, on ``chosen`` until the block ends."""
    with _chosen_lock:
        _chosen.append(chosen)
    try:
        yield chosen
    finally:
        with _chosen_lock:
            _chosen.remove(chosen)
