"""copy2 on Python 3.12+: where the Windows backend clones and where it calls CopyFile2.

CopyFile2 is tests/fakes/kernel32.py's FakeCopyFile2 in place of
``_winapi.CopyFile2``; the Windows build is set per test.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import cowpath
from cowpath import _win32 as win32
from cowpath import _windows as win
from cowpath._common import Metadata
from cowpath._select import use_backend
from cowpath._windows import WindowsBackend
from tests.fakes import copy_data
from tests.fakes.kernel32 import FakeCopyFile2, FakeKernel32, Volume, needs_fake
from tests.fsutil import listing, write_file

FILE_ATTRIBUTE_HIDDEN = 0x2


# -- CopyFile2 -------------------------------------------------------------------------------


@pytest.fixture
def copyfile2(monkeypatch: pytest.MonkeyPatch, fake: FakeKernel32) -> FakeCopyFile2:
    function = FakeCopyFile2(fake)
    monkeypatch.setattr(win, "_copyfile2_function", lambda: function)
    monkeypatch.setattr(win, "_windows_build", lambda: 20348)  # Windows Server 2022
    return function


def _build(monkeypatch: pytest.MonkeyPatch, build: int) -> None:
    monkeypatch.setattr(win, "_windows_build", lambda: build)


@needs_fake
@pytest.mark.parametrize("build", [20348, 26100])
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("metadata", [Metadata.NONE, Metadata.MODE])
def test_copyfile_and_copy_never_use_copyfile2(
    refs: Path,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
    fake: FakeKernel32,
    monkeypatch: pytest.MonkeyPatch,
    build: int,
    mode: str,
    metadata: int,
) -> None:
    _build(monkeypatch, build)
    write_file(refs / "src", 5000)
    fake.state_of_path(refs / "src").streams.append(":Zone.Identifier:$DATA")
    copy_data(backend, refs / "src", refs / "dst", mode, None, metadata)  # type: ignore[arg-type]
    assert copyfile2.calls == []
    assert fake.state_of_path(refs / "dst").streams == ["::$DATA"]


@needs_fake
def test_copy2_of_a_plain_file_is_a_clone(
    refs: Path, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    data = write_file(refs / "src", 40_000)
    report = cowpath.CopyReport()
    copy_data(backend, refs / "src", refs / "dst", "auto", report, Metadata.STAT)
    assert (refs / "dst").read_bytes() == data
    assert copyfile2.calls == []
    assert report.files_cloned == 1


@needs_fake
@pytest.mark.parametrize("extra", ["stream", "hidden"])
def test_copy2_of_a_file_with_more_than_data_is_copyfile2(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2, extra: str
) -> None:
    data = write_file(refs / "src", 40_000)
    state = fake.state_of_path(refs / "src")
    if extra == "stream":
        state.streams.append(":Zone.Identifier:$DATA")
    else:
        state.attributes |= FILE_ATTRIBUTE_HIDDEN
    report = cowpath.CopyReport()
    job = copy_data(backend, refs / "src", refs / "dst", "auto", report, Metadata.STAT)
    assert not job.by_path  # CopyFile2 set the metadata: the engine does not redo it
    assert (refs / "dst").read_bytes() == data
    ((src, private, flags),) = copyfile2.calls
    assert src == str(refs / "src")
    # Into a private name beside the destination, then named: it appears whole.
    assert os.path.dirname(private) == str(refs)
    assert private != str(refs / "dst")
    assert flags == win.COPY_FILE_ALLOW_DECRYPTED_DESTINATION | win.COPY_FILE_FAIL_IF_EXISTS
    assert listing(refs) == ["dst", "src"]
    assert (report.files_cloned, report.files_copied) == (0, 1)
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()
    # What CopyFile2 carries, the destination has.
    assert fake.state_of_path(refs / "dst").streams == state.streams


@needs_fake
def test_copy2_that_cannot_clone_is_copyfile2(
    tmp_path: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    ntfs = fake.volume(tmp_path / "ntfs", Volume(serial=0x3, filesystem="NTFS", clones=False))
    data = write_file(ntfs / "src", 4000)
    copy_data(backend, ntfs / "src", ntfs / "dst", "auto", None, Metadata.STAT)
    assert (ntfs / "dst").read_bytes() == data
    assert len(copyfile2.calls) == 1
    assert listing(ntfs) == ["dst", "src"]


@needs_fake
@pytest.mark.parametrize(
    ("build", "delegated"), [(19045, True), (20348, True), (22621, False), (26100, False)]
)
def test_copy2_never_uses_copyfile2_only_where_it_cannot_clone(
    refs: Path,
    fake: FakeKernel32,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
    monkeypatch: pytest.MonkeyPatch,
    build: int,
    delegated: bool,
) -> None:
    _build(monkeypatch, build)
    data = write_file(refs / "src", 4000)
    copy_data(backend, refs / "src", refs / "dst", "never", None, Metadata.STAT)
    assert (refs / "dst").read_bytes() == data
    assert bool(copyfile2.calls) is delegated
    assert "FSCTL_DUPLICATE_EXTENTS_TO_FILE" not in fake.names()


@needs_fake
def test_copy2_always_clones_and_never_delegates(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    report = cowpath.CopyReport()
    copy_data(backend, refs / "src", refs / "dst", "always", report, Metadata.STAT)
    assert (refs / "dst").read_bytes() == data
    assert copyfile2.calls == []
    assert report.files_cloned == 1


@needs_fake
@pytest.mark.parametrize("atomic", [False, True])
def test_copy2_with_copyfile2_onto_an_existing_file(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2, atomic: bool
) -> None:
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    write_file(refs / "dst", 100, seed=3)
    inode = os.stat(refs / "dst").st_ino
    copy_data(backend, refs / "src", refs / "dst", "auto", None, Metadata.STAT, atomic=atomic)
    assert (refs / "dst").read_bytes() == data
    ((_, target, flags),) = copyfile2.calls
    if atomic:
        # A whole new file renamed over the old one.
        assert target != str(refs / "dst")
        assert flags & win.COPY_FILE_FAIL_IF_EXISTS
        assert os.stat(refs / "dst").st_ino != inode
    else:
        # In place, as shutil.copy2 calls it.
        assert (target, flags) == (str(refs / "dst"), win.COPY_FILE_ALLOW_DECRYPTED_DESTINATION)
    assert listing(refs) == ["dst", "src"]


@needs_fake
def test_copyfile2_access_denied_falls_back_as_shutil_does(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    # shutil.copy2 answers ERROR_ACCESS_DENIED from CopyFile2 with copyfile
    # and copystat; cowpath's copyfile step then clones.
    data = write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    copyfile2.fail_with = win32.ERROR_ACCESS_DENIED
    report = cowpath.CopyReport()
    copy_data(backend, refs / "src", refs / "dst", "auto", report, Metadata.STAT)
    assert (refs / "dst").read_bytes() == data
    assert len(copyfile2.calls) == 1
    assert (report.files_cloned, report.files_copied) == (1, 0)
    assert fake.state_of_path(refs / "dst").streams == ["::$DATA"]
    assert listing(refs) == ["dst", "src"]


@needs_fake
def test_copyfile2_failure_raises_with_both_names_and_leaves_nothing(
    refs: Path, fake: FakeKernel32, backend: WindowsBackend, copyfile2: FakeCopyFile2
) -> None:
    write_file(refs / "src", 4000)
    fake.state_of_path(refs / "src").streams.append(":extra:$DATA")
    copyfile2.fail_with = win32.ERROR_DISK_FULL
    with pytest.raises(OSError) as caught:
        copy_data(backend, refs / "src", refs / "dst", "auto", None, Metadata.STAT)
    assert caught.value.errno == errno.ENOSPC
    assert (caught.value.filename, caught.value.filename2) == (str(refs / "src"), str(refs / "dst"))
    assert listing(refs) == ["src"]


@needs_fake
def test_copytree_with_copyfile2_clones_plain_files(
    refs: Path,
    fake: FakeKernel32,
    backend: WindowsBackend,
    copyfile2: FakeCopyFile2,
) -> None:
    (refs / "tree").mkdir()
    for i in range(4):
        write_file(refs / "tree" / f"f{i}", 5000 + i, seed=i)
    fake.state_of_path(refs / "tree" / "f3").streams.append(":Zone.Identifier:$DATA")
    report = cowpath.CopyReport()
    with use_backend(backend):
        cowpath.copytree(refs / "tree", refs / "copy", report=report)
    assert (report.files_cloned, report.files_copied) == (3, 1)
    assert len(copyfile2.calls) == 1
    assert fake.state_of_path(refs / "copy" / "f3").streams[-1] == ":Zone.Identifier:$DATA"
