"""Two checkouts of cowpath against each other, interleaved, with ``cp`` beside them.

``python -m bench.ab OLD NEW [--rounds N] [--filesystems xfs,btrfs]`` times
``cowpath.copytree`` of the benchmark's 10,000-file tree and
``cowpath.copyfile`` of its 1 GiB file with the package found in directory
OLD and in directory NEW (a ``git worktree`` of each revision), and
``cp -a --reflink=auto`` as the anchor, on fresh loop filesystems. Each
round runs the three in a rotated order, each in a fresh interpreter after
the page cache is dropped, so that a shared machine's drift falls on all of
them alike; the medians and the ratios NEW/OLD and each/cp are printed and
written as JSON. Needs root, as ``python -m bench`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.loopfs import loop_filesystem, scratch_dir
from bench.workload import FULL, make_file, make_tree

_CALL = {
    "tree": "cowpath.copytree({src!r}, {dst!r})",
    "file": "cowpath.copyfile({src!r}, {dst!r})",
}
_TIMED = (
    "import sys, time\nsys.path.insert(0, {root!r})\nimport cowpath\n"
    "start = time.perf_counter()\n{call}\nprint(time.perf_counter() - start)\n"
)


def _drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def _once(case: str, root: str | None, src: str, dst: str) -> float:
    _drop_caches()
    if root is None:
        command = ["cp", "-a", "--reflink=auto"] if case == "tree" else ["cp", "--reflink=auto"]
        start = time.perf_counter()
        subprocess.run([*command, src, dst], check=True)
        took = time.perf_counter() - start
    else:
        code = _TIMED.format(root=root, call=_CALL[case].format(src=src, dst=dst))
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        took = float(done.stdout.strip())
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    else:
        os.unlink(dst)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("old", help="directory holding the old cowpath package")
    parser.add_argument("new", help="directory holding the new cowpath package")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--filesystems", default="xfs,btrfs")
    parser.add_argument("--output", default="ab-results.json")
    args = parser.parse_args(argv)
    contestants: dict[str, str | None] = {"old": args.old, "new": args.new, "cp": None}
    results: dict[str, object] = {}
    with scratch_dir() as scratch:
        for kind in args.filesystems.split(","):
            with loop_filesystem(kind, scratch, 8 * 1024**3) as mnt:
                make_tree(FULL.tree, os.path.join(mnt, "tree"))
                make_file(FULL.file, os.path.join(mnt, "file"))
                for case in ("tree", "file"):
                    names = list(contestants)
                    times: dict[str, list[float]] = {name: [] for name in names}
                    for round_ in range(args.rounds):
                        shift = round_ % len(names)
                        for name in names[shift:] + names[:shift]:
                            src, dst = os.path.join(mnt, case), os.path.join(mnt, case + "-copy")
                            times[name].append(_once(case, contestants[name], src, dst))
                    medians = {name: statistics.median(values) for name, values in times.items()}
                    ratios = {
                        "new/old": medians["new"] / medians["old"],
                        "old/cp": medians["old"] / medians["cp"],
                        "new/cp": medians["new"] / medians["cp"],
                    }
                    results[f"{kind}/{case}"] = {"median_s": medians, "times_s": times, "ratios": ratios}
                    shown = "  ".join(f"{name} {value * 1000:.1f} ms" for name, value in medians.items())
                    ratio_text = "  ".join(f"{name} {value:.2f}" for name, value in ratios.items())
                    print(f"{kind:6} {case:5} {shown}  |  {ratio_text}", flush=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
