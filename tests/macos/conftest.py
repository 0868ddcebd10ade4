"""The macOS backend on a fake libSystem (tests/fakes/libsystem.py), which acts on real files.

Only the libSystem binding is replaced (``MacBackend(lib=...)``). Everything
else, staging, renames, chmod, utime, the copy fallback, is the real backend
on the real filesystem, driven through cowpath's public functions. The fake
keeps its state in Linux extended attributes: where there are none, the
tests skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cowpath._macos import MacBackend
from cowpath._select import use_backend
from tests.fakes.libsystem import FakeLibSystem, skip_without_user_xattrs


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeLibSystem]:
    """A fake libSystem under the macOS backend, chosen as cowpath's backend."""
    if not hasattr(os, "setxattr"):
        pytest.skip("the fake keeps its state in Linux xattrs")
    skip_without_user_xattrs(tmp_path)
    monkeypatch.delenv("COWPATH_REFLINK", raising=False)
    lib = FakeLibSystem()
    with use_backend(MacBackend(lib)):
        yield lib
