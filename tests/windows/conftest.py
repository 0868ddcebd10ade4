"""The Windows backend on a fake kernel32 (tests/fakes/kernel32.py), which acts on real files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cowpath._windows import WindowsBackend
from tests.fakes.kernel32 import FakeKernel32, Volume


@pytest.fixture
def fake() -> Iterator[FakeKernel32]:
    """A fake kernel32; at the end no handle it gave out may be leaked or wrongly closed."""
    kernel = FakeKernel32()
    yield kernel
    leaked = kernel.open_reopened()
    kernel.close()
    assert not kernel.bad_closes, "a C runtime handle was closed"
    assert not leaked, "a reopened handle was not closed"


@pytest.fixture
def refs(tmp_path: Path, fake: FakeKernel32) -> Path:
    """A directory on a fake ReFS volume with 4 KiB clusters."""
    return fake.volume(tmp_path / "refs", Volume(serial=0xA11CE))


@pytest.fixture
def backend(fake: FakeKernel32) -> WindowsBackend:
    """A Windows backend on the fake kernel32 (called directly, not chosen for cowpath's calls)."""
    return WindowsBackend(kernel32=fake)
