"""A new tree copied directory by directory, with helper processes that walk too.

The helpers are forked where the caller has one thread, and are fresh
interpreters otherwise; a directory larger than one piece of work is
shared out; a helper that dies has its work done again, whole. Each test
checks the copy against shutil's, and that the helpers were really used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cowpath
from cowpath import _dirwork, _procs
from tests.fsutil import child_processes
from tests.parity import tree_state

pytestmark = pytest.mark.skipif(not _procs.available(), reason="helper processes are used on Linux only")


@pytest.fixture
def messages(monkeypatch: pytest.MonkeyPatch) -> list[tuple[_procs.Helper, list[tuple[object, ...]]]]:
    """Helpers start for any tree; each message sent to one is recorded with the helper."""
    monkeypatch.setattr(_procs, "MIN_FILES", 1)
    monkeypatch.setattr(_procs, "WAIT_FOR_HELPERS", True)
    sent: list[tuple[_procs.Helper, list[tuple[object, ...]]]] = []
    send = _procs.Helper.send

    def recording(helper: _procs.Helper, message: tuple[object, ...]) -> bool:
        work = message[-1]
        assert isinstance(work, list)
        sent.append((helper, work))
        return send(helper, message)

    monkeypatch.setattr(_procs.Helper, "send", recording)
    return sent


def _tree(root: Path, dirs: int = 8, files: int = 12) -> Path:
    for d in range(dirs):
        deep = root / f"d{d}" / "a" / "b"
        deep.mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}").write_bytes(os.urandom(20 + 31 * f))
            (deep / f"g{f}").write_bytes(bytes([d, f]) * (5 + f))
        os.chmod(root / f"d{d}" / "a", 0o750)
        os.utime(root / f"d{d}" / "f1", (1_000_000, 2_000_000))
        (root / f"d{d}" / "rel").symlink_to("f0")
    return root


def _same_as_shutil(src: Path, dst: Path, scratch: Path) -> None:
    shutil.copytree(src, scratch, symlinks=True)
    assert tree_state(dst, mtimes=True) == tree_state(scratch, mtimes=True)


def test_forked_where_the_caller_has_one_thread(cloning_fs: Path, messages: list) -> None:  # type: ignore[type-arg]
    assert len(os.listdir("/proc/self/task")) == 1, "the test runner left a thread running"
    src = _tree(cloning_fs / "src")
    report = cowpath.CopyReport()
    cowpath.copytree(src, cloning_fs / "dst", symlinks=True, report=report)
    helpers = {helper for helper, _ in messages}
    assert helpers, "no work went to a helper"
    assert all(helper.process is None for helper in helpers), "a helper was not forked"
    assert report.files == report.files_cloned == 8 * 12 * 2
    _same_as_shutil(src, cloning_fs / "dst", cloning_fs / "expected")
    assert child_processes() == []


def test_fresh_interpreters_where_threads_exist(cloning_fs: Path, messages: list) -> None:  # type: ignore[type-arg]
    src = _tree(cloning_fs / "src")
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        cowpath.copytree(src, cloning_fs / "dst", symlinks=True)
    finally:
        done.set()
        other.join()
    helpers = {helper for helper, _ in messages}
    assert helpers, "no work went to a helper"
    # A fork of a process with another thread is unsafe: each is a new interpreter.
    assert all(helper.process is not None for helper in helpers)
    _same_as_shutil(src, cloning_fs / "dst", cloning_fs / "expected")
    assert child_processes() == []


def test_a_large_directory_is_shared_out(xfs: Path, messages: list) -> None:  # type: ignore[type-arg]
    src = xfs / "src"
    (src / "big").mkdir(parents=True)
    count = 3 * _dirwork.CHUNK + 17
    for f in range(count):
        (src / "big" / f"f{f:04}").write_bytes(f.to_bytes(2, "little") * 3)
    progress: list[cowpath.TreeProgress] = []
    cowpath.copytree(src, xfs / "dst", progress=progress.append)
    # Its files past the first piece of work went out as pieces of their own.
    pieces = [item for _, work in messages for item in work if item[0] == "files"]
    assert pieces, "the large directory was copied in one piece"
    assert all(len(item[1]) <= _dirwork.CHUNK for item in pieces)
    assert len(progress) == count
    assert [p.files_done for p in progress] == list(range(1, count + 1))
    assert (progress[-1].files_total, progress[-1].scanning) == (count, False)
    assert sum(p.scanning for p in progress) == count - 1
    _same_as_shutil(src, xfs / "dst", xfs / "expected")


def test_work_of_a_helper_that_dies_is_done_again(
    xfs: Path,
    monkeypatch: pytest.MonkeyPatch,
    messages: list,  # type: ignore[type-arg]
) -> None:
    src = _tree(xfs / "src", dirs=10)
    send = _procs.Helper.send  # the recording one
    killed: list[int] = []

    def killing(helper: _procs.Helper, message: tuple[object, ...]) -> bool:
        sent = send(helper, message)
        if not killed and len(messages) >= 3:
            # Killed with its work in hand: some of it may be half done.
            killed.append(helper.pid)
            os.kill(helper.pid, signal.SIGKILL)
        return sent

    monkeypatch.setattr(_procs.Helper, "send", killing)
    cowpath.copytree(src, xfs / "dst", symlinks=True)
    assert killed
    _same_as_shutil(src, xfs / "dst", xfs / "expected")
    assert child_processes() == []


def test_errors_of_helpers_and_caller_in_shutils_order(xfs: Path, tmpfs: Path, messages: list) -> None:  # type: ignore[type-arg]
    # reflink="always" across filesystems: every file fails in a helper; a
    # FIFO fails in the caller; the walk with one worker lists them as shutil would.
    src = _tree(tmpfs / "src", dirs=4, files=3)
    for d in (1, 3):
        os.mkfifo(src / f"d{d}" / "a" / "pipe")
    with pytest.raises(shutil.Error) as ours:
        cowpath.copytree(src, xfs / "dst", reflink="always")
    assert messages
    with pytest.raises(shutil.Error) as serial:
        cowpath.copytree(src, xfs / "serial", reflink="always", workers=1)
    assert ours.value.args[0] == [
        (s, d.replace("/serial", "/dst"), w.replace("/serial", "/dst")) for s, d, w in serial.value.args[0]
    ]
    assert len(ours.value.args[0]) == 4 * (3 + 3 + 1) + 2


# Audit hooks cannot be removed: each copy runs in a child of its own.
AUDITED = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import shutil
import cowpath
from cowpath import _procs
_procs.MIN_FILES = 1
_procs.WAIT_FOR_HELPERS = True
sent = []
send = _procs.Helper.send
def counting(helper, message):
    sent.append(len(message[-1]))
    return send(helper, message)
_procs.Helper.send = counting
events = []
def hook(event, args):
    if event in ("shutil.copyfile", "shutil.copytree"):
        events.append((event, os.fsdecode(os.fspath(args[0])), os.fsdecode(os.fspath(args[1]))))
sys.addaudithook(hook)
how, src, dst = sys.argv[2:5]
if how == "shutil":
    shutil.copytree(src, dst)
elif how == "progress":
    cowpath.copytree(src, dst, progress=lambda p: None)
else:
    cowpath.copytree(src, dst)
print(json.dumps({"events": events, "sent": sum(sent)}))
"""


def _audited(how: str, src: Path, dst: Path) -> tuple[list[tuple[str, str, str]], int]:
    """The copy's audit events, each as (event, source under ``src``, the destination's last parts)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", AUDITED, str(root), how, str(src), str(dst)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    events = []
    for event, source, target in result["events"]:
        relative = Path(source).relative_to(src)
        # The destination as far as the source is deep: a copy staged in a
        # private directory names its files there, under the same relative path.
        parts = Path(target).parts
        tail = Path(*parts[len(parts) - len(relative.parts) :]) if relative.parts else Path()
        events.append((event, str(relative), str(tail)))
    return sorted(events), result["sent"]


@pytest.mark.parametrize("how", ["plain", "progress"])
def test_audit_events_of_helpers_files_are_shutils(xfs: Path, how: str) -> None:
    src = _tree(xfs / "src", dirs=4, files=6)
    # More files than one piece of work: the rest go out as pieces of their own.
    big = src / "big"
    big.mkdir()
    for f in range(_dirwork.CHUNK + 20):
        (big / f"h{f}").write_bytes(b"h" * f)
    expected, _ = _audited("shutil", src, xfs / "expected")
    events, sent = _audited(how, src, xfs / "dst")
    assert sent > 0, "no work went to a helper"
    assert events == expected
    assert len([e for e in expected if e[0] == "shutil.copyfile"]) == 4 * (6 * 2 + 1) + _dirwork.CHUNK + 20
