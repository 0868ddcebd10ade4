"""copytree with its files copied in helper processes: the same promises as with threads.

Helpers start only for trees of thousands of files; these tests lower the
threshold (``cowpath._procs.MIN_FILES``) so that small trees use them too,
and count the files the helpers were sent, so that a test cannot pass on
threads alone.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cowpath
from cowpath import _procs
from cowpath._linux import LinuxBackend
from cowpath._select import use_backend
from tests.fsutil import child_processes
from tests.parity import outcome, tree_state

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not _procs.available(), reason="helper processes are used on Linux only")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Helpers start for any tree the pool takes; the list holds the size of each batch sent."""
    monkeypatch.setattr(_procs, "MIN_FILES", 1)
    monkeypatch.setattr(_procs, "WAIT_FOR_HELPERS", True)
    batches: list[int] = []
    send = _procs.Helper.send

    def counting(helper: _procs.Helper, message: tuple[object, ...]) -> bool:
        work = message[-1]
        assert isinstance(work, list)
        batches.append(len(work))
        return send(helper, message)

    monkeypatch.setattr(_procs.Helper, "send", counting)
    return batches


def _tree(root: Path, dirs: int = 6, files: int = 15) -> Path:
    for d in range(dirs):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(files):
            (root / f"d{d}" / f"f{f}").write_bytes(os.urandom(50 + 37 * f))
            (sub / f"g{f}").write_bytes(bytes([f]) * (10 + f))
        os.chmod(root / f"d{d}" / "f0", 0o640)
        os.utime(root / f"d{d}" / "f1", (1_000_000, 2_000_000))
    (root / "link").symlink_to("d0/f1")
    return root


def _fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


def test_helpers_copy_as_threads_do(cloning_fs: Path, sent: list[int]) -> None:
    src = _tree(cloning_fs / "src")
    fds = _fds()
    report = cowpath.CopyReport()
    seen: list[cowpath.TreeProgress] = []
    assert (
        cowpath.copytree(src, cloning_fs / "dst", report=report, progress=seen.append) == cloning_fs / "dst"
    )
    shutil.copytree(src, cloning_fs / "expected")
    assert sum(sent) > 0, "no file went to a helper"
    assert tree_state(cloning_fs / "dst", mtimes=True) == tree_state(cloning_fs / "expected", mtimes=True)
    files = 6 * 15 * 2 + 1  # and the symlink, copied as a file
    assert report.files == report.files_cloned == files
    assert report.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert len(seen) == files
    assert (seen[-1].files_done, seen[-1].bytes_done, seen[-1].scanning) == (files, report.bytes, False)
    assert _fds() == fds
    assert child_processes() == [], "a helper was left running or unwaited"


def test_errors_listed_in_shutils_order(xfs: Path, tmpfs: Path, sent: list[int]) -> None:
    # reflink="always" across filesystems: every file fails in its helper.
    src = _tree(tmpfs / "src", dirs=3, files=8)
    with pytest.raises(shutil.Error) as procs:
        cowpath.copytree(src, xfs / "a", reflink="always")
    assert sum(sent) > 0
    with pytest.raises(shutil.Error) as threads:
        cowpath.copytree(src, xfs / "b", reflink="always", workers=1)
    a = outcome(lambda: (_ for _ in ()).throw(procs.value), xfs / "a")
    b = outcome(lambda: (_ for _ in ()).throw(threads.value), xfs / "b")
    assert a.errors == b.errors
    assert a.errors is not None
    assert len(a.errors) == 3 * 8 * 2 + 1
    assert all(os.strerror(errno.EXDEV) in str(e.why) for e in a.errors), a.errors[0]
    assert child_processes() == []


def test_move_across_filesystems_uses_helpers(xfs: Path, btrfs: Path, sent: list[int]) -> None:
    src = _tree(xfs / "src")
    expected = tree_state(src, mtimes=True)
    cowpath.move(src, btrfs / "moved")
    assert sum(sent) > 0
    assert not src.exists()
    assert tree_state(btrfs / "moved", mtimes=True) == expected


def test_custom_copy_function_and_fakes_stay_in_process(xfs: Path, sent: list[int]) -> None:
    src = _tree(xfs / "src", dirs=3)
    callers: set[int] = set()

    def copy_function(a: str, b: str) -> None:
        callers.add(os.getpid())
        shutil.copy2(a, b)

    cowpath.copytree(src, xfs / "custom", copy_function=copy_function)
    assert callers == {os.getpid()}
    with use_backend(LinuxBackend(unnamed_staging=False)):
        cowpath.copytree(src, xfs / "substituted")
    assert sent == [], "a helper was used for a custom copy function or another backend"
    assert tree_state(xfs / "substituted") == tree_state(xfs / "custom")


def test_pyfakefs_stays_in_process(sent: list[int]) -> None:
    patcher_module = pytest.importorskip("pyfakefs.fake_filesystem_unittest")
    with patcher_module.Patcher() as patcher:
        for d in range(4):
            for f in range(10):
                patcher.fs.create_file(f"/data/src/d{d}/f{f}", contents=b"x" * f)
        cowpath.copytree("/data/src", "/data/dst")
        with open("/data/dst/d3/f9", "rb") as handle:
            assert handle.read() == b"x" * 9
    assert sent == []


def test_where_helpers_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _procs.available()
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert not _procs.available(), "a free-threaded build needs no helper"
    monkeypatch.undo()
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(sys, "platform", platform)
        assert not _procs.available()


# -- interrupted and killed ------------------------------------------------------------

CHILD = r"""
import os, signal, sys, time
# As in a terminal, whatever the test runner's shell left ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
import cowpath
from cowpath import _procs
_procs.MIN_FILES = 1
_procs.WAIT_FOR_HELPERS = True
start = _procs.Helper.__init__
def started(helper):
    start(helper)
    print("helper", helper.pid, flush=True)
_procs.Helper.__init__ = started
try:
    # A progress callback that takes its time: the copy lasts seconds.
    cowpath.copytree(sys.argv[2], sys.argv[3], reflink="never", progress=lambda p: time.sleep(0.002))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


def _big_tree(root: Path) -> Path:
    for d in range(60):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(40):
            (root / f"d{d}" / f"f{f}").write_bytes(bytes([d]) * (4096 + 1000 * f))
    return root


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start(src: Path, dst: Path) -> tuple[subprocess.Popen[str], list[int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT), str(src), str(dst)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    helpers: list[int] = []
    while len(helpers) < 2:
        line = child.stdout.readline()
        assert line.startswith("helper"), line
        helpers.append(int(line.split()[1]))
    while not dst.exists():
        time.sleep(0.01)
    return child, helpers


def _whole_files_only(src: Path, dst: Path) -> None:
    for path in dst.rglob("*"):
        relative = path.relative_to(dst)
        if relative.parts[0].startswith(".cowpath-"):
            continue
        if path.is_file():
            assert path.read_bytes() == (src / relative).read_bytes(), f"partial file named {path}"


def test_killed_caller_takes_its_helpers(ext4: Path) -> None:
    src = _big_tree(ext4 / "src")
    child, helpers = _start(src, ext4 / "dst")
    time.sleep(0.05)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in helpers), "a helper outlived its caller"
    _whole_files_only(src, ext4 / "dst")


def test_ctrl_c_stops_caller_and_helpers(ext4: Path) -> None:
    src = _big_tree(ext4 / "src")
    child, helpers = _start(src, ext4 / "dst")
    time.sleep(0.05)
    interrupted = time.monotonic()
    # As a terminal sends it: to the whole process group.
    os.killpg(child.pid, signal.SIGINT)
    assert child.stdout is not None
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 3, out
    assert time.monotonic() - interrupted < 10
    assert not any(_alive(pid) for pid in helpers)
    _whole_files_only(src, ext4 / "dst")


CLI = r"""
import sys
sys.path.insert(0, sys.argv[1])
from cowpath import _procs
from cowpath._cli import main
_procs.MIN_FILES = 1
_procs.WAIT_FOR_HELPERS = True
send = _procs.Helper.send
def counting(helper, message):
    # One write per line: the pool's threads may call this at once.
    sys.stdout.write(f"batch {len(message[-1])}\n")
    return send(helper, message)
_procs.Helper.send = counting
sys.exit(main(sys.argv[2:]))
"""


def test_cli_cp_and_mv_use_helpers(xfs: Path, btrfs: Path) -> None:
    src = _tree(xfs / "src")
    expected = tree_state(src, mtimes=True)
    for command, dst in (("cp", xfs / "copy"), ("mv", btrfs / "moved")):
        args = ["-r", "-p"] if command == "cp" else []
        done = subprocess.run(
            [sys.executable, "-c", CLI, str(ROOT), command, *args, str(src), str(dst)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert sum(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("batch")) > 0
        assert tree_state(dst, mtimes=True) == expected, command
    assert not src.exists()
