"""Moving, continued: CowPath.move and move_into, ``cowpath mv``, stale staging, kills, properties."""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cowpath
from cowpath import CowPath
from cowpath._stale import make_locked
from tests.faultutil import NOBODY, SmallFilesystems, in_child, leftovers
from tests.fsutil import shared_bytes
from tests.parity import run_both, tree_state
from tests.test_cli import cowpath as run_cli
from tests.test_move import _fixed_times, _tree, write_file

ROOT = Path(__file__).resolve().parent.parent

# -- CowPath.move and move_into --------------------------------------------------------


def test_cowpath_move_clones_between_subvolumes(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    data = write_file(first / "f", 1_000_000)
    os.link(first / "f", first / "keep")
    report = cowpath.CopyReport()
    moved = CowPath(first / "f").move(second / "g", report=report)
    assert isinstance(moved, CowPath)
    assert moved == second / "g"
    assert moved.read_bytes() == data
    assert not (first / "f").exists()
    assert shared_bytes(moved) > 0
    assert report.files_cloned == 1


def test_cowpath_move_into_a_directory(xfs_binds: tuple[Path, Path]) -> None:
    first, second = xfs_binds
    top = _tree(first)
    (second / "into").mkdir()
    expected = tree_state(top, mtimes=True)
    moved = CowPath(top).move_into(str(second / "into"))
    assert moved == second / "into" / "tree"
    assert tree_state(moved, mtimes=True) == expected
    assert not top.exists()
    assert leftovers(second) == []


def test_cowpath_move_replaces_a_file_and_renames_on_one_filesystem(btrfs: Path) -> None:
    write_file(btrfs / "a", 10)
    write_file(btrfs / "b", 20)
    report = cowpath.CopyReport()
    assert CowPath(btrfs / "a").move(btrfs / "b", report=report) == btrfs / "b"
    assert (btrfs / "b").stat().st_size == 10
    assert report.files_renamed == 1


def test_cowpath_move_refuses_the_same_file(btrfs: Path) -> None:
    write_file(btrfs / "a", 10)
    os.link(btrfs / "a", btrfs / "b")
    with pytest.raises(OSError) as caught:
        CowPath(btrfs / "a").move(btrfs / "b")
    assert caught.value.errno == errno.EINVAL
    assert (btrfs / "a").exists()


def test_cowpath_move_of_a_tree_onto_an_existing_directory_across(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    top = _tree(first)
    (second / "there").mkdir()
    write_file(second / "there" / "x", 3)
    with pytest.raises(FileExistsError):
        CowPath(top).move(second / "there")
    assert top.exists()


def test_cowpath_move_keeps_a_symlink(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    os.symlink("target", first / "ln")
    moved = CowPath(first / "ln").move(second / "ln")
    assert os.readlink(moved) == "target"
    assert not os.path.lexists(first / "ln")


def test_cowpath_move_into_needs_a_name() -> None:
    with pytest.raises(ValueError, match="empty name"):
        CowPath("/").move_into("/tmp")


# -- cowpath mv ---------------------------------------------------------------------------


def test_mv_moves_several_sources_into_a_directory(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    _tree(first)
    write_file(first / "f", 70000)
    done = run_cli("mv", "-v", first / "tree", first / "f", second, check=True)
    assert (second / "tree" / "big").exists()
    assert (second / "f").stat().st_size == 70000
    assert not (first / "tree").exists()
    assert not (first / "f").exists()
    # As GNU mv -v says of a move that had to copy: the copy, then the removal.
    assert f"cloned '{first / 'f'}' -> '{second / 'f'}'\nremoved '{first / 'f'}'\n" in done.stdout
    assert f"cloned '{first / 'tree'}' -> '{second / 'tree'}'\nremoved '{first / 'tree'}'\n" in done.stdout
    assert done.stderr.startswith("cowpath: 4 files cloned (")  # nothing renamed: not named


def test_mv_replaces_a_file_and_an_empty_directory(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    write_file(first / "f", 10)
    write_file(second / "g", 99)
    run_cli("mv", "-q", first / "f", second / "g", check=True)
    assert (second / "g").stat().st_size == 10
    _tree(first)
    (second / "tree").mkdir()
    run_cli("mv", "-q", first / "tree", second, check=True)
    assert (second / "tree" / "big").exists()


def test_mv_errors_take_one_line_and_exit_1(ext4: Path) -> None:
    write_file(ext4 / "f", 10)
    (ext4 / "d").mkdir()
    (ext4 / "full").mkdir()
    write_file(ext4 / "full" / "x", 1)
    done = run_cli("mv", ext4 / "f", ext4 / "nothing", ext4 / "f")
    assert (done.returncode, done.stderr.count("\n")) == (1, 1)
    assert "is not a directory" in done.stderr
    done = run_cli("mv", "-q", ext4 / "missing", ext4 / "g")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "No such file or directory" in done.stderr
    write_file(ext4 / "d" / "full", 1)
    done = run_cli("mv", "-q", ext4 / "full", ext4 / "d")
    assert done.returncode == 1
    expected = f"cannot overwrite non-directory '{ext4 / 'd' / 'full'}' with directory '{ext4 / 'full'}'"
    assert done.stderr == f"cowpath: {expected}\n"
    assert run_cli("mv", ext4 / "only").returncode == 2


def test_mv_reflink_always_fails_where_it_cannot_clone(xfs: Path, ext4: Path) -> None:
    write_file(xfs / "f", 10000)
    done = run_cli("mv", "--reflink=always", xfs / "f", ext4 / "f")
    assert done.returncode == 1
    assert (xfs / "f").exists()
    assert not (ext4 / "f").exists()


# -- stale staging ----------------------------------------------------------------------

HOLD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from cowpath._stale import make_locked
locked = make_locked(sys.argv[2])
open(locked.path + "/inside", "w").close()
print(locked.path, flush=True)
time.sleep(600)
"""


def _holder(directory: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(ROOT), str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_staging_of_a_live_process_is_kept_and_of_a_dead_one_removed(btrfs: Path) -> None:
    child, path = _holder(btrfs)
    try:
        assert cowpath.clean_staging(btrfs) == []
        cowpath.copytree(
            _tree(btrfs / "src"), btrfs / "copy", symlinks=True
        )  # a copy into the same directory
        assert os.path.exists(os.path.join(path, "inside"))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert cowpath.clean_staging(btrfs) == [path]
    assert not os.path.exists(path)


def test_a_later_move_or_copy_removes_stale_staging(subvolumes: tuple[Path, Path]) -> None:
    first, second = subvolumes
    for where in (second, second / "dst"):
        where.mkdir(exist_ok=True)
        child, path = _holder(where)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert os.path.exists(path)
    cowpath.move(_tree(first), second / "moved")
    cowpath.copytree(second / "moved", second / "dst", symlinks=True, dirs_exist_ok=True)
    assert leftovers(second) == []


def test_staging_in_this_process_is_live(btrfs: Path) -> None:
    locked = make_locked(btrfs)
    try:
        assert cowpath.clean_staging(btrfs) == []
    finally:
        locked.release()
    assert cowpath.clean_staging(btrfs) == [locked.path]


def test_clean_staging_leaves_links_names_and_other_users_alone(small: SmallFilesystems) -> None:
    btrfs = small.make("btrfs")
    outside = btrfs / "outside"
    outside.mkdir()
    write_file(outside / "keep", 10)
    os.symlink(outside, btrfs / ".cowpath-0123456789abcdef")
    (btrfs / ".cowpath-not-ours").mkdir()
    (btrfs / ".cowpath-fedcba9876543210").mkdir()
    os.chown(btrfs / ".cowpath-fedcba9876543210", NOBODY, NOBODY)
    assert cowpath.clean_staging(btrfs) == []
    assert (outside / "keep").exists()
    assert (btrfs / ".cowpath-not-ours").is_dir()
    # Root's unlocked directory, seen by nobody: not nobody's to remove.
    mine = btrfs / ".cowpath-00000000000000aa"
    mine.mkdir()
    os.chmod(btrfs, 0o777)
    assert in_child(cowpath.clean_staging, str(btrfs), user=NOBODY) == [
        str(btrfs / ".cowpath-fedcba9876543210")
    ]
    assert mine.is_dir()
    assert cowpath.clean_staging(btrfs) == [os.path.join(btrfs, ".cowpath-00000000000000aa")]


def test_cowpath_clean_command(btrfs: Path) -> None:
    child, path = _holder(btrfs)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = run_cli("clean", "-v", btrfs, check=True)
    assert f"removed '{path}'" in done.stdout
    assert "1 stale staging directory removed" in done.stderr
    assert not os.path.exists(path)


# -- killed moves -----------------------------------------------------------------------

# Moves a tree (or a file) from A to B and back, until killed.
MOVER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import cowpath
a, b = sys.argv[2], sys.argv[3]
while True:
    cowpath.move(a, b)
    cowpath.move(b, a)
"""


def _files(top: Path) -> dict[str, bytes]:
    if top.is_file():
        return {".": top.read_bytes()}
    return {str(p.relative_to(top)): p.read_bytes() for p in top.rglob("*") if p.is_file()}


def _kill_moves(first: Path, second: Path, make: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    a, b = first / "x", second / "x"
    if make == "tree":
        _tree(first).rename(a)
        for i in range(150):
            write_file(a / "a" / f"n{i}", 20000 + i, seed=i % 200)
    else:
        write_file(a, 64 * 1024 * 1024 + 5)
    whole = _files(a)
    for _ in range(rounds):
        child = subprocess.Popen([sys.executable, "-c", MOVER, str(ROOT), str(a), str(b)])
        time.sleep(0.2 + rng.random() * 0.6)
        child.send_signal(signal.SIGKILL)
        child.wait()
        complete = [path for path in (a, b) if path.exists() and _files(path) == whole]
        assert complete, "neither the source nor the destination is whole"
        for path in (a, b):
            if path.exists() and path not in complete:
                # The other one is whole: this is a source partly removed,
                # and what it still holds is whole.
                for name, data in _files(path).items():
                    assert whole[name] == data, (path, name)
        keep = complete[0]
        for path in (a, b):
            if path != keep and os.path.lexists(path):
                subprocess.run(["rm", "-rf", str(path)], check=True)
        for where in (first, second):
            cowpath.clean_staging(where)
            assert leftovers(where) == []


@pytest.mark.parametrize("make", ["tree", "file"])
def test_killed_moves_lose_nothing_quick(make: str, request: pytest.FixtureRequest) -> None:
    first, second = request.getfixturevalue("xfs"), request.getfixturevalue("ext4")
    _kill_moves(first, second, make, rounds=2, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["subvolumes", "xfs_to_ext4", "xfs_to_tmpfs"])
@pytest.mark.parametrize("make", ["tree", "file"])
def test_killed_moves_lose_nothing(setup: str, make: str, request: pytest.FixtureRequest) -> None:
    if setup.startswith("xfs_to_"):
        first, second = request.getfixturevalue("xfs"), request.getfixturevalue(setup[7:])
    else:
        first, second = request.getfixturevalue(setup)
    _kill_moves(first, second, make, rounds=10, seed=hash((setup, make)) % 1000)


# -- properties: as shutil.move ------------------------------------------------------------

ENTRY = st.sampled_from(["file", "dir", "link", "none"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=ENTRY,
    target=ENTRY,
    into=st.booleans(),
    trailing=st.booleans(),
    function=st.sampled_from(["default", "copy", "custom"]),
)
def test_property_as_shutil_move(
    subvolumes: tuple[Path, Path], source: str, target: str, into: bool, trailing: bool, function: str
) -> None:
    def make(path: Path, kind: str, seed: int) -> None:
        if kind == "file":
            write_file(path, 3000 + seed, seed=seed)
        elif kind == "dir":
            (path / "in").mkdir(parents=True)
            write_file(path / "in" / "f", 5000 + seed, seed=seed)
            os.symlink("in/f", path / "ln")
        elif kind == "link":
            os.symlink("elsewhere", path)

    def setup(a: Path, b: Path) -> None:
        for area in (a, b):
            for entry in list(area.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        make(a / "s", source, 1)
        if into:
            (b / "d").mkdir()
            make(b / "d" / "s", target, 2)
        else:
            make(b / "t", target, 2)
        _fixed_times(a, b)

    def call(module: object, a: Path, b: Path) -> object:
        dst = str(b / "d") if into else str(b / "t")
        chosen = {
            "default": {},
            "copy": {"copy_function": module.copy},
            "custom": {"copy_function": shutil.copy},
        }  # type: ignore[attr-defined]
        return module.move(str(a / "s") + ("/" if trailing else ""), dst, **chosen[function])  # type: ignore[attr-defined]

    # Modification times are compared in tests/test_move.py: here a
    # directory gaining an entry, a recreated link and a file copied by
    # copy rather than copy2 get the time of each run.
    run_both(list(subvolumes), setup, call)
