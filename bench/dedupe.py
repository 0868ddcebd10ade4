"""``python -m bench dedupe``: ``cowpath dedupe -r`` against ``jdupes -B -r`` and ``duperemove -dr``.

Each tool gets a fresh loop filesystem holding the same seeded tree (about
3,000 files and 1.5 GiB, 60% of the data duplicated, plus near-duplicates
that differ in one byte); the page cache is dropped before each run. The
figures are the space each tool reclaimed (free space before and after,
synced) and its wall-clock time. Results go to
``bench/results/dedupe-latest.json`` and the table in docs/dedupe.md is
regenerated from them (:func:`write_docs`), never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.loopfs import FILESYSTEMS, LoopFsError, loop_filesystem, scratch_dir, used_bytes

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
DOC: Final = ROOT / "docs" / "dedupe.md"
BEGIN, END = "<!-- dedupe-bench:begin -->", "<!-- dedupe-bench:end -->"
MIB: Final = 1024 * 1024

TOOLS: Final[dict[str, list[str]]] = {
    "cowpath dedupe -r": [sys.executable, "-m", "cowpath", "dedupe", "-r", "--no-progress"],
    "jdupes -B -r": ["jdupes", "-B", "-r", "-q"],
    "duperemove -dr": ["duperemove", "-dr", "-q"],
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


def run_one(kind: str, tool: str, files: int, total: int) -> dict[str, Any]:
    with scratch_dir() as scratch, loop_filesystem(kind, scratch, max(4 * total, 1024 * MIB)) as point:
        tree = Path(point) / "tree"
        facts = make_tree(tree, files, total)
        _drop_caches()
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
        "seconds": round(seconds, 3),
        "reclaimed_bytes": reclaimed,
        "exit": done.returncode,
        **facts,
    }


def write_docs(results: dict[str, Any]) -> None:
    """Regenerate the measured table in docs/dedupe.md from ``results``."""
    rows = [
        "| filesystem | tool | time (s) | reclaimed (MiB) | of jdupes -B |",
        "|---|---|---:|---:|---:|",
    ]
    jdupes = {r["filesystem"]: r["reclaimed_bytes"] for r in results["runs"] if r["tool"] == "jdupes -B -r"}
    for r in results["runs"]:
        base = jdupes.get(r["filesystem"]) or 0
        share = f"{100 * r['reclaimed_bytes'] / base:.1f}%" if base else "-"
        rows.append(
            f"| {r['filesystem']} | `{r['tool']}` | {r['seconds']:.2f} | "
            f"{r['reclaimed_bytes'] / MIB:.1f} | {share} |"
        )
    first = results["runs"][0] if results["runs"] else {"files": 0, "bytes": 0, "duplicate_bytes": 0}
    lines = [
        BEGIN,
        f"A seeded tree of {first['files']:,} files, {first['bytes'] / MIB:,.0f} MiB, of which "
        f"{first['duplicate_bytes'] / MIB:,.0f} MiB are duplicates; page cache dropped before each "
        f"run; {results['when']} on Linux {results['kernel']}.",
        "",
        *rows,
        END,
    ]
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + "\n".join(lines) + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dedupe", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small tree (smoke run); docs untouched")
    parser.add_argument(
        "--filesystems", default="xfs,btrfs", help=f"comma-separated: {','.join(FILESYSTEMS)}"
    )
    parser.add_argument("--files", type=int, help="files in the tree (default 3000)")
    parser.add_argument("--mib", type=int, help="MiB in the tree (default 1536)")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    files = args.files or (200 if args.quick else 3000)
    total = (args.mib or (32 if args.quick else 1536)) * MIB
    runs = []
    for kind in args.filesystems.split(","):
        for tool, command in TOOLS.items():
            if shutil.which(command[0]) is None:
                print(f"{kind:6} {tool:20} unavailable (apt-get install {command[0]})")
                continue
            try:
                run = run_one(kind, tool, files, total)
            except LoopFsError as exc:
                print(f"bench: {exc}", file=sys.stderr)
                return 1
            runs.append(run)
            print(f"{kind:6} {tool:20} {run['seconds']:7.2f} s  {run['reclaimed_bytes'] / MIB:9.1f} MiB")
    results = {"when": time.strftime("%Y-%m-%d"), "kernel": os.uname().release, "runs": runs}
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "dedupe-quick.json" if args.quick else "dedupe-latest.json"
    (out / name).write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick:
        write_docs(results)
    return 0
