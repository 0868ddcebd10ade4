"""cowpath's public functions on the Windows backend, and staging as Windows renames.

The backend on a fake kernel32 is chosen for cowpath's calls with
use_backend(), as on Python 3.10 and 3.11 (no CopyFile2).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cowpath
import cowpath._probe
from cowpath import _staging
from cowpath import _windows as win
from cowpath._select import use_backend
from cowpath._windows import WindowsBackend
from tests.fakes.kernel32 import FakeKernel32, Volume, needs_fake
from tests.fsutil import listing, write_file

# -- the public functions with the backend chosen for them ------------------------------------


@pytest.fixture
def swapped(monkeypatch: pytest.MonkeyPatch, backend: WindowsBackend) -> Iterator[WindowsBackend]:
    monkeypatch.setattr(win, "_copyfile2_function", lambda: None)  # as on Python 3.10/3.11
    # supports_reflink caches its answers per filesystem: none from another
    # backend may answer here, and none from the fake may outlive the test.
    cowpath._probe.clear_cache()
    with use_backend(backend) as chosen:
        yield chosen
    cowpath._probe.clear_cache()


@needs_fake
@pytest.mark.parametrize(
    "function", [cowpath.copyfile, cowpath.copy, cowpath.copy2, cowpath.reflink], ids=lambda f: f.__name__
)
def test_public_functions_clone(
    refs: Path, fake: FakeKernel32, swapped: WindowsBackend, function: Any
) -> None:
    data = write_file(refs / "src", 70_000)
    report = cowpath.CopyReport()
    function(refs / "src", refs / "dst", report=report)
    assert (refs / "dst").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (1, 0)
    assert fake.duplicates()


@needs_fake
def test_copytree_clones_every_file(refs: Path, fake: FakeKernel32, swapped: WindowsBackend) -> None:
    expected = {}
    for i in range(12):
        path = refs / "tree" / f"d{i % 3}" / f"f{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        expected[path.relative_to(refs / "tree")] = write_file(path, 1000 * i + 1, seed=i)
    report = cowpath.CopyReport()
    cowpath.copytree(refs / "tree", refs / "copy", report=report)
    assert (report.files_cloned, report.files_copied) == (12, 0)
    for relative, data in expected.items():
        assert (refs / "copy" / relative).read_bytes() == data


@needs_fake
def test_supports_reflink_answers_from_a_real_clone(
    tmp_path: Path, refs: Path, fake: FakeKernel32, swapped: WindowsBackend
) -> None:
    ntfs = fake.volume(tmp_path / "ntfs", Volume(serial=0x2, filesystem="NTFS", clones=False))
    assert cowpath.supports_reflink(refs) is True
    assert fake.duplicates()
    # The answer is cached per pair of st_dev, which the fake volumes share.
    cowpath._probe.clear_cache()
    assert cowpath.supports_reflink(ntfs) is False
    assert listing(refs) == []
    assert listing(ntfs) == []


# -- staging on Windows ---------------------------------------------------------------------


@needs_fake
@pytest.mark.parametrize("appeared", [False, True])
def test_staging_on_windows_closes_then_renames_without_replacing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appeared: bool
) -> None:
    monkeypatch.setattr(_staging, "_RENAME_KEEPS", True)
    target = tmp_path / "target"
    staging = _staging.stage(target, unnamed=False)
    assert staging is not None
    fd = staging.fd
    os.write(fd, b"new")
    if appeared:
        target.write_bytes(b"someone else's")
    renamed = []

    def windows_rename(src: Any, dst: Any) -> None:
        # Windows refuses while a descriptor is open on the file, and
        # never replaces an existing file.
        with pytest.raises(OSError):
            os.fstat(fd)
        if os.path.exists(dst):
            raise FileExistsError(errno.EEXIST, "exists", dst)
        renamed.append(dst)
        os.replace(src, dst)

    monkeypatch.setattr(_staging.os, "rename", windows_rename)
    assert staging.commit(replace=False) is (not appeared)
    if appeared:
        assert target.read_bytes() == b"someone else's"
        staging.discard()
    else:
        assert target.read_bytes() == b"new"
    assert listing(tmp_path) == ["target"]
