"""The command's progress bar, as the tqdm it drives sees it, and what --progress says without tqdm.

A stand-in tqdm (``tests/fakes/tqdm_recorder``) is put first on the
command's PYTHONPATH and records every state the bar is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"


def _cowpath(
    *args: str | os.PathLike[str], tqdm: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(FAKES / tqdm), str(ROOT)])}
    if log is not None:
        env["COWPATH_TQDM_LOG"] = str(log)
    return subprocess.run(
        [sys.executable, "-m", "cowpath", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def _tree(root: Path, directories: int, files: int) -> int:
    """A tree of files of different sizes (some empty); returns its bytes."""
    total = 0
    for d in range(directories):
        (root / f"d{d:03}").mkdir(parents=True)
        for f in range(files):
            size = (d * 7 + f * 13) % 5 * 1000
            (root / f"d{d:03}" / f"f{f}").write_bytes(b"x" * size)
            total += size
    return total


def _states(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _check_never_full_early(states: list[dict[str, Any]], tree_bytes: int, tree_files: int) -> None:
    updates = [s for s in states if s["event"] == "update"]
    assert updates, states
    totals = [s["total"] for s in updates if s["total"] is not None]
    # Once the bar has a total it is the whole tree's, and it never changes.
    assert set(totals) == {tree_bytes}
    first_total = next(i for i, s in enumerate(updates) if s["total"] is not None)
    assert all(s["total"] is not None for s in updates[first_total:])
    # Without a total the bar counts files found so far ("+"); with one, all of them.
    for state in updates[:first_total]:
        assert state["percent"] is None
        assert state["postfix"].endswith("+ files"), state
    for state in updates[first_total:]:
        assert state["postfix"].endswith(f"/{tree_files} files"), state
    # 100% only at the very end.
    assert [s["percent"] for s in updates].count("100") == 1
    assert updates[-1]["percent"] == "100"
    assert updates[-1]["postfix"] == f"{tree_files}/{tree_files} files"
    assert [s["n"] for s in updates] == sorted(s["n"] for s in updates)


def test_the_bar_has_no_total_while_the_walk_runs_and_reads_100_only_at_the_end(tmp_path: Path) -> None:
    """A tree large enough that the walk is still listing it while copies are done.

    The walk waits for the copies (a few batches per thread queued), so
    most files are copied before the tree is fully listed.
    """
    directories, files = 150, 20
    tree_bytes = _tree(tmp_path / "src", directories, files)
    log = tmp_path / "bar.jsonl"
    done = _cowpath(
        "cp",
        "-r",
        "--progress",
        "--workers=2",
        tmp_path / "src",
        tmp_path / "dst",
        tqdm="tqdm_recorder",
        log=log,
    )
    assert done.returncode == 0, done.stderr
    states = _states(log)
    updates = [s for s in states if s["event"] == "update"]
    assert len(updates) == directories * files
    # Copies were reported while the walk was still finding files...
    scanning = [s for s in updates if s["total"] is None]
    assert len(scanning) > directories * files // 2
    assert scanning[-1]["n"] > 0
    _check_never_full_early(states, tree_bytes, directories * files)
    assert states[-1]["event"] == "close"


def test_a_small_tree_has_its_total_from_the_first_file(tmp_path: Path) -> None:
    """Fewer files than it takes to start the threads: they are copied once the walk is over."""
    tree_bytes = _tree(tmp_path / "src", 3, 4)
    log = tmp_path / "bar.jsonl"
    done = _cowpath(
        "cp", "-r", "--progress", tmp_path / "src", tmp_path / "dst", tqdm="tqdm_recorder", log=log
    )
    assert done.returncode == 0, done.stderr
    states = _states(log)
    assert all(s["total"] == tree_bytes for s in states if s["event"] == "update")
    _check_never_full_early(states, tree_bytes, 12)


def test_percent_held_below_100_until_the_last_file() -> None:
    """Empty files last, or a 99.7% that tqdm rounds up: still not 100% before the end."""
    from cowpath._cliutil import percent_safe

    assert percent_safe(1000, 1000, 9, 10) < 995
    assert f"{100 * percent_safe(997, 1000, 999, 1000) / 1000:3.0f}" == " 99"
    assert percent_safe(1000, 1000, 10, 10) == 1000
    assert percent_safe(5, 1, 0, 1) == 0
    assert percent_safe(0, 0, 0, 3) == 0


def test_no_bar_for_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    log = tmp_path / "bar.jsonl"
    done = _cowpath("cp", "--progress", tmp_path / "f", tmp_path / "g", tqdm="tqdm_recorder", log=log)
    assert done.returncode == 0, done.stderr
    assert not log.exists()


def test_progress_without_tqdm_says_how_to_get_it(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 2, 3)
    done = _cowpath("cp", "-r", "--progress", tmp_path / "src", tmp_path / "dst", tqdm="tqdm_missing")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert (
        lines[0]
        == "cowpath: --progress: the bar needs tqdm, which is not installed (pip install 'cowpath[cli]')"
    )
    assert len(lines) == 2, lines
    assert "6 copied" in lines[1] or "6 files cloned" in lines[1], lines
    # The extra named is the one that brings tqdm.
    assert 'cli = ["tqdm' in (ROOT / "pyproject.toml").read_text()
    for command in ("mv", "dedupe"):
        other = _cowpath(command, "--progress", tmp_path / "dst", tmp_path / "moved", tqdm="tqdm_missing")
        assert other.stderr.count("pip install 'cowpath[cli]'") == 1, other.stderr


def test_no_tqdm_message_unless_progress_is_asked_for(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 2, 3)
    done = _cowpath("cp", "-r", tmp_path / "src", tmp_path / "dst", tqdm="tqdm_missing")
    assert done.returncode == 0, done.stderr
    assert "tqdm" not in done.stderr


def test_a_bad_tqdm_setting_costs_the_bar_not_the_copy(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 2, 3)
    env = {"TQDM_MININTERVAL": "fast"}
    done = _cowpath(
        "cp", "-r", "--progress", tmp_path / "src", tmp_path / "dst", tqdm="tqdm_settings", env=env
    )
    assert done.returncode == 0
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0] == (
        "cowpath: no progress bar: tqdm refused a setting ($TQDM_...): "
        "could not convert string to float: 'fast'"
    )
    assert sorted(p.name for p in (tmp_path / "dst").rglob("f*")) == sorted(
        p.name for p in (tmp_path / "src").rglob("f*")
    )
