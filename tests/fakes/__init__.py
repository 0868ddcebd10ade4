"""Fakes of the OS seams (kernel32, libSystem) that act on real files."""

from __future__ import annotations

from typing import Any

from cowpath._backend import Backend, FileJob
from cowpath._common import Metadata
from cowpath._engine import transfer


def copy_data(
    backend: Backend,
    src: Any,
    dst: Any,
    mode: Any,
    report: Any = None,
    metadata: Metadata = Metadata.NONE,
    atomic: bool = False,
) -> FileJob:
    """One file through the engine on ``backend``, as copyfile/copy/copy2 give it (no shutil checks)."""
    job = FileJob(src, dst, mode, metadata, atomic, report)
    transfer(backend, job)
    return job
