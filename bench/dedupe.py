"""The dedupe case: ``cowpath dedupe -r`` against ``jdupes -B -r`` and ``duperemove -dr``.

Run as ``python -m bench --cases dedupe`` (with the other cases, by
default) or ``python -m bench dedupe``. Each run gets a fresh loop
filesystem holding the same seeded tree (about 3,000 files and 1.5 GiB,
60% of the data duplicated, plus near-duplicates that differ in one
byte); the page cache is dropped before each run, and each tool's program
is then loaded once (its ``--version``), as in the copy and move cases, so
that every tool starts warm while the tree is cold. Each round runs every
tool once, in an order rotated from round to round, so that slow drifts
of a shared machine spread over all tools. The figures are the space each
tool reclaimed (free space before and after, synced) and its wall-clock
time, the median of the rounds. Results go to
``bench/results/dedupe-latest.json``; with ``--update-docs`` they also
become the dedupe section of ``docs/data/benchmark.json``, from which the
table in docs/dedupe.md is generated (:mod:`bench.docs`), never typed by
hand.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.loopfs import LoopFsError, loop_filesystem, scratch_dir, used_bytes

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
DOC: Final = ROOT / "docs" / "dedupe.md"
BEGIN, END = "<!-- dedupe-bench:begin -->", "<!-- dedupe-bench:end -->"
MIB: Final = 1024 * 1024
#: The filesystems that can dedupe (ext4 cannot).
DEDUPE_FILESYSTEMS: Final = ("xfs", "btrfs")

TOOLS: Final[dict[str, list[str]]] = {
    "cowpath dedupe -r": [sys.executable, "-m", "cowpath", "dedupe", "-r", "--no-progress"],
    "jdupes -B -r": ["jdupes", "-B", "-r", "-q"],
    "duperemove -dr": ["duperemove", "-dr", "-q"],
}

#: Each tool's program loaded without touching the tree.
PROGRAMS: Final[dict[str, list[str]]] = {
    "cowpath dedupe -r": [sys.executable, "-m", "cowpath", "--version"],
    "jdupes -B -r": ["jdupes", "--version"],
    "duperemove -dr": ["duperemove", "--version"],
}


def make_tree(root: Path, files: int, total: int, seed: int = 2026) -> dict[str, int]:
    """A seeded tree: sizes log-uniform from 1 byte to 16 MiB, 60% of the bytes duplicates."""
    rng = random.Random(seed)
    originals: list[bytes] = []
    written = duplicate = 0
    mean = total // files
    for i in range(files):
        directory = root / f"d{i % 60:02d}" / f"e{i % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if originals and roll < 0.6:
            data = rng.choice(originals)
            duplicate += len(data)
        elif originals and roll < 0.65:
            near = bytearray(rng.choice(originals))
            near[rng.randrange(len(near))] ^= 1  # a near-duplicate: never to be shared
            data = bytes(near)
        else:
            size = min(int(rng.lognormvariate(0, 2.2) * mean / 6) + 1, 16 * MIB)
            data = rng.randbytes(size)
            originals.append(data)
        (directory / f"f{i}.bin").write_bytes(data)
        written += len(data)
    return {"files": files, "bytes": written, "duplicate_bytes": duplicate}


def _drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run_one(kind: str, tool: str, files: int, total: int, round_: int = 0) -> dict[str, Any]:
    with scratch_dir() as scratch, loop_filesystem(kind, scratch, max(4 * total, 1024 * MIB)) as point:
        tree = Path(point) / "tree"
        facts = make_tree(tree, files, total)
        _drop_caches()
        # The program back into the cache, not the tree: a Python tool
        # would otherwise pay for reading its interpreter and modules.
        subprocess.run(PROGRAMS[tool], capture_output=True, check=False, cwd=ROOT)
        before = used_bytes(point)
        start = time.perf_counter()
        done = subprocess.run(
            [*TOOLS[tool], str(tree)], capture_output=True, text=True, check=False, cwd=ROOT
        )
        seconds = time.perf_counter() - start
        os.sync()
        time.sleep(0.5)  # btrfs returns freed extents at its next commit
        os.sync()
        reclaimed = before - used_bytes(point)
    return {
        "filesystem": kind,
        "tool": tool,
        "round": round_,
        "seconds": round(seconds, 3),
        "reclaimed_bytes": reclaimed,
        "exit": done.returncode,
        **facts,
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per filesystem and tool: the median time and the median space reclaimed of its rounds."""
    rows = []
    for kind in dict.fromkeys(r["filesystem"] for r in runs):
        for tool in TOOLS:
            mine = [r for r in runs if r["filesystem"] == kind and r["tool"] == tool]
            if not mine:
                continue
            rows.append(
                {
                    "filesystem": kind,
                    "tool": tool,
                    "rounds": len(mine),
                    "times": [r["seconds"] for r in mine],
                    "seconds": statistics.median(r["seconds"] for r in mine),
                    "reclaimed_bytes": int(statistics.median(r["reclaimed_bytes"] for r in mine)),
                    "exit": max(r["exit"] for r in mine),
                    **{key: mine[0][key] for key in ("files", "bytes", "duplicate_bytes")},
                }
            )
    return rows


#: How the table says that each tool's program was loaded after the drop.
LOADED: Final = ", then each tool's program loaded (the tree stays cold)"


def section(results: dict[str, Any]) -> str:
    """The measured table of docs/dedupe.md (between its markers), from ``results``."""
    rows = [
        "| filesystem | tool | time (s), median | each round (s) | reclaimed (MiB) | of jdupes -B |",
        "|---|---|---:|---:|---:|---:|",
    ]
    table = results["rows"]
    jdupes = {r["filesystem"]: r["reclaimed_bytes"] for r in table if r["tool"] == "jdupes -B -r"}
    for r in table:
        base = jdupes.get(r["filesystem"]) or 0
        share = f"{100 * r['reclaimed_bytes'] / base:.1f}%" if base else "-"
        each = ", ".join(f"{t:.2f}" for t in r["times"])
        rows.append(
            f"| {r['filesystem']} | `{r['tool']}` | {r['seconds']:.2f} | {each} | "
            f"{r['reclaimed_bytes'] / MIB:.1f} | {share} |"
        )
    first = table[0] if table else {"files": 0, "bytes": 0, "duplicate_bytes": 0}
    lines = [
        f"A seeded tree of {first['files']:,} files, {first['bytes'] / MIB:,.0f} MiB, of which "
        f"{first['duplicate_bytes'] / MIB:,.0f} MiB are duplicates; page cache dropped before each "
        f"run{LOADED if results.get('programs_loaded') else ''}; "
        f"{results['rounds']} rounds, tools in rotated order; {results['when']} on Linux "
        f"{results['kernel']}, {results['cpus']} CPUs.",
        "",
        *rows,
    ]
    return "\n".join(lines)


def write_docs(results: dict[str, Any]) -> None:
    """Make ``results`` the dedupe section of docs/data/benchmark.json and regenerate the docs from it."""
    from bench import docs

    docs.save("dedupe", results)
    docs.render_pages(docs.load())


def measure(
    filesystems: list[str],
    *,
    quick: bool,
    rounds: int | None = None,
    files: int | None = None,
    mib: int | None = None,
    results_dir: str | Path = RESULTS,
    docs: bool = False,
) -> int:
    """Run every tool on every filesystem for ``rounds`` rounds; write the results (and the docs table)."""
    files = files or (200 if quick else 3000)
    total = (mib or (32 if quick else 1536)) * MIB
    rounds = rounds or (1 if quick else 5)
    tools = [tool for tool, command in TOOLS.items() if shutil.which(command[0]) is not None]
    for tool in TOOLS:
        if tool not in tools:
            print(f"dedupe: {tool} unavailable (apt-get install {TOOLS[tool][0]})", file=sys.stderr)
    runs = []
    for r in range(rounds):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for kind in filesystems:
            for tool in order:
                try:
                    run = run_one(kind, tool, files, total, r)
                except LoopFsError as exc:
                    print(f"bench: {exc}", file=sys.stderr)
                    return 1
                runs.append(run)
                print(
                    f"[{kind}] dedupe {tool:20} round {r + 1}/{rounds}: {run['seconds']:7.2f} s  "
                    f"{run['reclaimed_bytes'] / MIB:9.1f} MiB reclaimed",
                    file=sys.stderr,
                    flush=True,
                )
    results = {
        "when": time.strftime("%Y-%m-%d"),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "quick": quick,
        "rounds": rounds,
        # Each tool's program loaded after the drop (see run_one).
        "programs_loaded": True,
        "rows": summarise(runs),
        "runs": runs,
    }
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "dedupe-quick.json" if quick else "dedupe-latest.json"
    (out / name).write_text(json.dumps(results, indent=2) + "\n")
    if docs and not quick:
        write_docs(results)
    return 1 if any(r["exit"] not in (0, 1) for r in runs) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dedupe", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a small tree, one round (smoke run); docs untouched"
    )
    parser.add_argument(
        "--filesystems", default=",".join(DEDUPE_FILESYSTEMS), help="comma-separated: xfs,btrfs"
    )
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 5, or 1 with --quick)")
    parser.add_argument("--files", type=int, help="files in the tree (default 3000)")
    parser.add_argument("--mib", type=int, help="MiB in the tree (default 1536)")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="make this run's results the dedupe section of docs/data/benchmark.json and regenerate "
        "the docs from it (without it, no tracked file is touched)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: print the docs table of FILE (with --update-docs, write it)",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if args.update_docs:
            write_docs(results)
        else:
            print(section(results))
        return 0
    if args.update_docs and args.quick:
        parser.error("--update-docs needs a full run, not --quick")
    return measure(
        [kind for kind in args.filesystems.split(",") if kind],
        quick=args.quick,
        rounds=args.rounds,
        files=args.files,
        mib=args.mib,
        results_dir=args.results_dir,
        docs=args.update_docs,
    )
