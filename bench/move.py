"""The move benchmark: ``python -m bench --move``.

A 1 GiB file and a 10,000-file tree (``--quick``: 64 MiB and 400 files)
moved between two btrfs subvolumes of one filesystem and between two bind
mounts of one XFS directory, where rename(2) fails with EXDEV, by
``cowpath.move``, GNU ``mv`` and ``shutil.move``. Each round makes the
source afresh as a clone of a master copy (``cp --reflink=always``), so
each tool moves the same layout; the space a move takes is the used blocks
after it minus before it, once the filesystem has settled.

How the times compare. Two costs are measured for each move, and cowpath's
ratio to each tool is given for both. In a program: what a running Python
program pays, which for ``cowpath.move`` and ``shutil.move`` is the call,
timed inside a fresh interpreter that has just imported the module, and for
``mv`` is running it as a command (``subprocess.run``), the way a program
uses it. As a command: a fresh process from start to exit for every tool
(``python -c "import cowpath; cowpath.move(SRC, DST)"``, which is what
``cowpath mv`` does), timed from outside, so that each side pays its own
start-up: for a single file that start-up, not the move, is most of the
figure. After the page cache is dropped, each tool's program is loaded once
(``mv --version``, ``python -c "import cowpath"``) before the timed run, so
that every tool starts warm while the source's metadata is cold.

The figures go to ``bench/results/latest-move[-quick].json``; with
``--update-docs``, to the move section of ``docs/data/benchmark.json`` and
from there to the "Moving" section of docs/performance.md (:mod:`bench.docs`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

from bench.loopfs import loop_filesystem, scratch_dir
from bench.run import RESULTS_DIR, ROOT, _drop_caches, _remove, _settled_used_bytes, _worker_env
from bench.workload import FULL, MIB, QUICK, make_file, make_tree, verify_file, verify_tree

__all__ = ["main"]

TOOLS: Final = ("cowpath", "mv", "shutil")
SETUPS: Final = ("btrfs-subvolumes", "xfs-bind-mounts")
MOVE_CODE: Final = (
    "import sys, time, {module}\n"
    "start = time.perf_counter()\n"
    "{module}.move(sys.argv[1], sys.argv[2])\n"
    "print(time.perf_counter() - start)\n"
)
DOCS_BEGIN: Final = "<!-- move-benchmark:begin -->"
DOCS_END: Final = "<!-- move-benchmark:end -->"


@contextlib.contextmanager
def _setup(kind: str, scratch: str, size: int) -> Iterator[tuple[str, str, str]]:
    """(mount, source side, destination side) where a rename between the sides fails with EXDEV."""
    fs = "btrfs" if kind.startswith("btrfs") else "xfs"
    with loop_filesystem(fs, scratch, size) as mount:
        if fs == "btrfs":
            sides = (os.path.join(mount, "sub1"), os.path.join(mount, "sub2"))
            for side in sides:
                subprocess.run(["btrfs", "subvolume", "create", side], check=True, capture_output=True)
            yield mount, sides[0], sides[1]
            return
        shared = os.path.join(mount, "shared")
        os.mkdir(shared)
        points = (os.path.join(scratch, "bind1"), os.path.join(scratch, "bind2"))
        try:
            for point in points:
                os.mkdir(point)
                subprocess.run(["mount", "--bind", shared, point], check=True, capture_output=True)
            yield mount, points[0], points[1]
        finally:
            for point in points:
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
                with contextlib.suppress(OSError):
                    os.rmdir(point)


def _move(tool: str, src: str, dst: str) -> tuple[float, float | None]:
    """(the whole command's time, the move call's own time inside Python, None for mv)."""
    if tool == "mv":
        subprocess.run(["mv", "--version"], check=False, capture_output=True)
        start = time.perf_counter()
        subprocess.run(["mv", src, dst], check=True)
        return time.perf_counter() - start, None
    module = "cowpath" if tool == "cowpath" else "shutil"
    env = _worker_env()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env, check=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MOVE_CODE.format(module=module), src, dst],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    command = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{tool}: {done.stderr.strip().splitlines()[-1:]}")
    return command, float(done.stdout.strip().splitlines()[-1])


def _run_setup(kind: str, scratch: str, quick: bool, rounds: int) -> list[dict[str, Any]]:
    workload = QUICK if quick else FULL
    size = max(4 * 1024 * MIB, 3 * (workload.file.size + workload.tree.files * 20_000))
    rows: list[dict[str, Any]] = []
    with _setup(kind, scratch, size) as (mount, first, second):
        for case in ("file", "tree"):
            master = os.path.join(first, f"master-{case}")
            if case == "tree":
                make_tree(workload.tree, master)
            else:
                make_file(workload.file, master)
            runs: dict[str, list[tuple[float, float | None, int]]] = {tool: [] for tool in TOOLS}
            for r in range(rounds):
                for tool in TOOLS[r % 3 :] + TOOLS[: r % 3]:
                    src, dst = os.path.join(first, f"src-{case}"), os.path.join(second, f"dst-{case}")
                    subprocess.run(["cp", "-a", "--reflink=always", master, src], check=True)
                    before = _settled_used_bytes(mount)
                    _drop_caches()
                    seconds, call = _move(tool, src, dst)
                    os.sync()
                    space = _settled_used_bytes(mount) - before
                    wrong = (
                        verify_tree(workload.tree, master, dst)
                        if case == "tree"
                        else verify_file(master, dst)
                    )
                    if wrong is not None or os.path.lexists(src):
                        raise RuntimeError(
                            f"{tool} moved {case} wrongly: {wrong or 'the source is still there'}"
                        )
                    runs[tool].append((seconds, call, space))
                    inside = "" if call is None else f" (the call {call:.4f} s)"
                    print(
                        f"[{kind}] {case} {tool:<8} {seconds:.4f} s{inside}, space {space / MIB:+.1f} MiB",
                        file=sys.stderr,
                    )
                    _remove(dst)
                    os.sync()
            _remove(master)
            for tool in TOOLS:
                rows.append(
                    {
                        "setup": kind,
                        "case": case,
                        "tool": tool,
                        "times": [t for t, _, _ in runs[tool]],
                        "median_s": statistics.median(t for t, _, _ in runs[tool]),
                        "call_times": [c for _, c, _ in runs[tool] if c is not None],
                        "call_median_s": (
                            None
                            if tool == "mv"
                            else statistics.median(c for _, c, _ in runs[tool] if c is not None)
                        ),
                        "space_bytes": statistics.median(s for _, _, s in runs[tool]),
                    }
                )
    return rows


def _in_program(row: dict[str, Any]) -> float:
    """What a running Python program pays for the move: the call, or for mv running it as a command."""
    call = row["call_median_s"]
    return float(row["median_s"] if call is None else call)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, with cowpath's ratios to mv and shutil.move.

    Two ways of paying for a move are compared. "In a program" is what a
    running Python program pays: the ``cowpath.move`` or ``shutil.move``
    call, or running ``mv`` as a command (``subprocess.run``), which is how
    a program uses it. "As a command" is a fresh process from start to
    exit for every tool, the interpreter's start-up and imports included:
    what ``cowpath mv`` costs typed at a shell.
    """
    lines = [
        "| setup | case | tool | in a program (median) | as a command (median) | space used "
        "| cowpath / this, in a program | cowpath / this, as commands |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mine = next(
            (r for r in rows if (r["setup"], r["case"], r["tool"]) == (row["setup"], row["case"], "cowpath")),
            None,
        )
        program = command = ""
        if row["tool"] != "cowpath" and mine is not None:
            program = f"{_in_program(mine) / _in_program(row):.2f}"
            command = f"{mine['median_s'] / row['median_s']:.2f}"
        lines.append(
            f"| {row['setup']} | {row['case']} | {row['tool']} | {_in_program(row):.3f} s "
            f"| {row['median_s']:.3f} s | {row['space_bytes'] / MIB:+.1f} MiB | {program} | {command} |"
        )
    return "\n".join(lines)


def section(data: dict[str, Any]) -> str:
    """The "Moving" block of docs/performance.md: how the run was made, then :func:`table`."""
    meta = data["meta"]
    return (
        f"Measured by `{meta['command']}` on {meta['date']} (kernel {meta['kernel']}, "
        f"{meta['rounds']} rounds, medians, page cache dropped before each move). "
        '"In a program" is what a running Python program pays: the `cowpath.move` or '
        '`shutil.move` call, or `mv` run as a command. "As a command" is a fresh process '
        "from start to exit for every tool (for cowpath and shutil a new interpreter that "
        "imports the module and moves), as typed at a shell.\n\n"
        f"{table(data['results'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench --move")
    parser.add_argument("--quick", action="store_true", help="64 MiB file, 400-file tree, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 3, or 1 with --quick)")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated: " + ",".join(SETUPS))
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="make this run the move section of docs/data/benchmark.json and regenerate the docs from it",
    )
    # Accepted for old command lines: leaving the docs alone is the default.
    parser.add_argument("--no-docs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.update_docs and args.quick:
        parser.error("--update-docs needs a full run, not --quick")
    rounds = args.rounds or (1 if args.quick else 3)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": os.uname().release,
        "rounds": rounds,
        "quick": args.quick,
        "command": " ".join(["python -m bench --move", *(argv if argv is not None else sys.argv[1:])]),
    }
    rows: list[dict[str, Any]] = []
    with scratch_dir() as scratch:
        for kind in args.setups.split(","):
            rows.extend(_run_setup(kind, scratch, args.quick, rounds))
    os.makedirs(args.results_dir, exist_ok=True)
    name = "latest-move-quick.json" if args.quick else "latest-move.json"
    with open(os.path.join(args.results_dir, name), "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)
        f.write("\n")
    text = table(rows)
    print(text)
    if args.update_docs:
        from bench import docs

        docs.save("move", {"meta": meta, "results": rows})
        docs.render_pages(docs.load())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
