"""The benchmark runs end to end: ``python -m bench --quick`` on one loop-mounted XFS, dedupe case included.

A smoke test, not a benchmark: it checks that every tool has a row in the
table and that the JSON results are whole, never how fast anything was.
Clone libraries missing from the test environment must show as unavailable
rows, not crash the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.tools import BASELINES, CASES, TOOLS

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("COWPATH_REQUIRE_LOOPFS") == "1"


def _tracked_state() -> dict[str, bytes]:
    """The content of every file the benchmark may write when asked to update the docs."""
    from bench import docs

    paths = [*docs.PAGES, docs.DATA, docs.CHART, docs.CHART_DARK]
    return {str(p): p.read_bytes() if p.exists() else b"" for p in paths}


def test_update_docs_needs_a_full_run() -> None:
    for command in (["--quick", "--update-docs"], ["--move", "--quick", "--update-docs"]):
        done = subprocess.run(
            [sys.executable, "-m", "bench", *command], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, done.stderr
        assert "--update-docs needs a full run" in done.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the benchmark mounts Linux loop filesystems")
    if os.geteuid() != 0:
        if REQUIRED:
            pytest.fail("COWPATH_REQUIRE_LOOPFS=1 but the benchmark needs root to mount XFS", pytrace=False)
        pytest.skip("the benchmark mounts a loop XFS: needs root")
    results = tmp_path_factory.mktemp("bench-results")
    tracked_before = _tracked_state()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--filesystems", "xfs", "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Without --update-docs a run changes no tracked file (docs, chart, results file).
    assert _tracked_state() == tracked_before
    # The dedupe case writes its own file (dedupe-quick.json), checked below.
    files = sorted(f for f in results.glob("*-quick.json") if not f.name.startswith("dedupe-"))
    assert [f.name for f in files if f.name.startswith("latest")] == ["latest-quick.json"]
    assert len(files) == 2
    with open(results / "latest-quick.json") as f:
        data = json.load(f)
    return done.stdout, data


def test_table_has_every_tool(quick_run: tuple[str, dict[str, object]]) -> None:
    table, _ = quick_run
    for tool in TOOLS:
        assert f"| XFS | {tool.label} |" in table, tool.label


def test_json_is_complete(quick_run: tuple[str, dict[str, object]]) -> None:
    _, data = quick_run
    meta = data["meta"]
    rows = data["results"]
    assert isinstance(meta, dict)
    assert isinstance(rows, list)
    assert meta["quick"] is True
    assert meta["failures"] == []
    assert {(r["case"], r["tool"]) for r in rows} == {(t.case, t.key) for t in TOOLS}
    assert {r["fs"] for r in rows} == {"xfs"}
    for row in rows:
        assert set(row["ratios"]) == set(BASELINES[row["case"]])
        if row["median_s"] is None:
            # Only a library missing from this environment may lack figures.
            assert row["unavailable"], row
            continue
        assert len(row["times"]) == row["rounds"] == meta["rounds"]
        assert all(t > 0 for t in row["times"])
        assert isinstance(row["space_bytes"], int | float)


def test_cowpath_rows_carry_memory_and_report(quick_run: tuple[str, dict[str, object]]) -> None:
    _, data = quick_run
    rows = data["results"]
    assert isinstance(rows, list)
    for case in CASES:
        row = next(r for r in rows if r["tool"] == "cowpath" and r["case"] == case)
        assert row["maxrss_kib"] > 0
        assert row["tracemalloc_peak"] > 0
        # XFS clones: every file of the source was cloned, none copied.
        assert row["report"]["files_copied"] == 0
        assert row["report"]["files_cloned"] == row["source"]["files"]


@pytest.fixture(scope="module")
def quick_move(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the benchmark mounts Linux loop filesystems")
    if os.geteuid() != 0:
        if REQUIRED:
            pytest.fail("COWPATH_REQUIRE_LOOPFS=1 but the move benchmark needs root to mount", pytrace=False)
        pytest.skip("the move benchmark mounts btrfs and XFS: needs root")
    results = tmp_path_factory.mktemp("bench-move-results")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--move", "--quick", "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(results / "latest-move-quick.json") as f:
        data = json.load(f)
    return done.stdout, data


def test_move_benchmark_has_every_tool_and_setup(quick_move: tuple[str, dict[str, object]]) -> None:
    from bench.move import SETUPS
    from bench.move import TOOLS as MOVE_TOOLS

    table, data = quick_move
    rows = data["results"]
    assert isinstance(rows, list)
    assert data["meta"]["quick"] is True  # type: ignore[index]
    wanted = {(setup, case, tool) for setup in SETUPS for case in ("file", "tree") for tool in MOVE_TOOLS}
    assert {(r["setup"], r["case"], r["tool"]) for r in rows} == wanted
    for row in rows:
        assert row["median_s"] > 0
        assert len(row["times"]) == data["meta"]["rounds"]  # type: ignore[index]
        # mv is a program; the Python tools' call is timed inside their process too.
        assert (row["call_median_s"] is None) == (row["tool"] == "mv")
        assert f"| {row['setup']} | {row['case']} | {row['tool']} |" in table


def test_dedupe_case_has_every_tool_and_they_agree(quick_run: tuple[str, dict[str, object]]) -> None:
    # `python -m bench --quick` runs the dedupe case too, into its own results file.
    from bench.dedupe import TOOLS as DEDUPE_TOOLS

    _, data = quick_run
    meta = data["meta"]
    assert isinstance(meta, dict)
    results = Path(meta["dedupe_results"])
    dedupe = json.loads(results.read_text())
    rows = {row["tool"]: row for row in dedupe["rows"] if row["filesystem"] == "xfs"}
    assert set(rows) == set(DEDUPE_TOOLS)
    assert all(row["exit"] == 0 and row["seconds"] > 0 for row in rows.values()), rows
    jdupes = rows["jdupes -B -r"]["reclaimed_bytes"]
    assert jdupes > 0
    # cowpath reclaims what jdupes -B does (duperemove's 128 KiB blocks miss small files).
    assert rows["cowpath dedupe -r"]["reclaimed_bytes"] >= 0.99 * jdupes
