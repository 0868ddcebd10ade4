"""Run the benchmark: every tool on every case and filesystem, side by side in one run.

For each filesystem (a fresh loop-mounted image) and case, the source is
written once; then each round runs every tool once, in an order rotated from
round to round so that slow drifts of a shared machine spread over all
tools. Before each copy the page cache is dropped (``sync`` then
``/proc/sys/vm/drop_caches``), so every tool starts cold; after it, ``sync``
and ``statvfs`` give the space the copy took, the copy is checked, and the
destination is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any, Final

from bench import dedupe, report
from bench.loopfs import FILESYSTEMS, LoopFsError, loop_filesystem, scratch_dir, used_bytes
from bench.tools import CASES, TREE_CASES, Case, Tool, tools_for
from bench.workload import FULL, MIB, QUICK, Workload, make_file, make_tree, verify_file, verify_tree

__all__ = ["main"]

ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR: Final = os.path.join(ROOT, "bench", "results")
GIB: Final = 1024 * MIB
#: The copy cases, then the dedupe case (its own tools and results file: bench/dedupe.py).
ALL_CASES: Final = (*CASES, "dedupe")
# A single copy that takes longer than this is stuck, not slow.
TIMEOUT: Final = 1800


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _worker_env() -> dict[str, str]:
    # The checkout's cowpath and bench, whatever is installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def _drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _run_command(tool: Tool, src: str, dst: str, scratch: str) -> dict[str, Any]:
    assert tool.command is not None
    # Load the binary and its libraries back into the cache after the drop,
    # as the Python tools have imported theirs before their clock starts.
    subprocess.run([tool.command[0], "--version"], check=False, capture_output=True)
    errors = os.path.join(scratch, "stderr.txt")
    actions = [(os.POSIX_SPAWN_OPEN, 2, errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
    start = time.perf_counter()
    pid = os.posix_spawnp(tool.command[0], [*tool.command, src, dst], os.environ, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        with open(errors, errors="replace") as f:
            message = f.read().strip().splitlines()
        return {"ok": False, "unavailable": False, "error": f"exit {code}: {' / '.join(message[:2])}"}
    # No memory figure for the command: its ru_maxrss survives exec, so a
    # child spawned by vfork would report this process's peak, not its own.
    return {"ok": True, "seconds": seconds}


def _run_python(case: Case, tool: Tool, src: str, dst: str, trace: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.worker", case, tool.key, src, dst]
    if trace:
        command.append("--trace")
    done = subprocess.run(
        command, cwd=ROOT, env=_worker_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = " / ".join(done.stderr.strip().splitlines()[-2:])
        return {"ok": False, "unavailable": False, "error": f"worker exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _settled_used_bytes(mount: str) -> int:
    """Bytes in use once the filesystem stops changing after a sync.

    XFS and btrfs free the blocks of deleted files in the background after
    the sync returns; a reading taken while that runs would charge the
    freeing to the next copy.
    """
    os.sync()
    last = used_bytes(mount)
    for _ in range(30):
        time.sleep(0.05)
        now = used_bytes(mount)
        if now == last:
            return now
        last = now
    return last


def _measure(
    case: Case, tool: Tool, src: str, dst: str, mount: str, scratch: str, workload: Workload, trace: bool
) -> dict[str, Any]:
    before = _settled_used_bytes(mount)
    _drop_caches()
    if tool.command is not None:
        result = _run_command(tool, src, dst, scratch)
    else:
        result = _run_python(case, tool, src, dst, trace)
    if result["ok"]:
        start = time.perf_counter()
        os.sync()
        result["sync_seconds"] = time.perf_counter() - start
        result["space_bytes"] = _settled_used_bytes(mount) - before
        wrong = verify_tree(workload.tree_of(case), src, dst) if case in TREE_CASES else verify_file(src, dst)
        if wrong is not None:
            result = {"ok": False, "unavailable": False, "error": f"wrong copy: {wrong}"}
    _remove(dst)
    os.sync()
    return result


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _summarise(row: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    good = [r for r in runs if r["ok"]]
    failed = [r for r in runs if not r["ok"]]
    if failed:
        row["error"] = failed[0]["error"]
        row["unavailable"] = all(r.get("unavailable") for r in failed)
    row["times"] = [r["seconds"] for r in good]
    row["median_s"] = _median(row["times"])
    row["min_s"] = min(row["times"]) if row["times"] else None
    row["again_s"] = _median([r["again_seconds"] for r in good if "again_seconds" in r])
    row["again_sync_s"] = _median([r["again_sync_seconds"] for r in good if "again_sync_seconds" in r])
    row["space_bytes"] = _median([r["space_bytes"] for r in good])
    row["sync_s"] = _median([r["sync_seconds"] for r in good])
    row["maxrss_kib"] = _median([r["maxrss_kib"] for r in good if "maxrss_kib" in r])
    growth = [r["maxrss_kib"] - r["maxrss_before_kib"] for r in good if "maxrss_before_kib" in r]
    row["rss_growth_kib"] = _median(growth)
    helpers = [r["helpers_private_kib"] for r in good if "helpers_private_kib" in r]
    if helpers:
        row["helpers_private_kib"] = _median(helpers)
        row["helpers"] = max(r["helpers"] for r in good if "helpers" in r)


def run_case(
    case: Case,
    fs: str,
    mount: str,
    scratch: str,
    workload: Workload,
    rounds: int,
    unavailable: dict[str, str],
) -> list[dict[str, Any]]:
    """Every tool over ``case`` on one filesystem: one row per tool."""
    src = os.path.join(mount, f"src-{case}")
    start = time.perf_counter()
    if case in TREE_CASES:
        files, size = make_tree(workload.tree_of(case), src)
        source = {"files": files, "bytes": size, "dirs": workload.tree_of(case).dirs}
    else:
        size = make_file(workload.file, src)
        source = {"files": 1, "bytes": size}
    os.sync()
    _log(f"[{fs}] {case}: source written ({size / MIB:.1f} MiB) in {time.perf_counter() - start:.1f} s")

    tools = tools_for(case)
    runs: dict[str, list[dict[str, Any]]] = {t.key: [] for t in tools}
    skip: dict[str, str] = {}
    for t in tools:
        if t.distribution in unavailable:
            skip[t.key] = unavailable[t.distribution]
    for r in range(rounds):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]
        for tool in order:
            if tool.key in skip:
                continue
            dst = os.path.join(mount, f"dst-{case}-{tool.key}-{r}")
            result = _measure(case, tool, src, dst, mount, scratch, workload, trace=False)
            runs[tool.key].append(result)
            if result["ok"]:
                _log(
                    f"[{fs}] {case} {tool.key:<12} round {r + 1}/{rounds}: "
                    f"{result['seconds']:.4f} s, space {result['space_bytes'] / MIB:+.1f} MiB"
                )
            else:
                _log(f"[{fs}] {case} {tool.key:<12} round {r + 1}/{rounds}: {result['error']}")
                if result.get("unavailable"):
                    skip[tool.key] = result["error"]

    rows = []
    for tool in tools:
        row: dict[str, Any] = {
            "case": case,
            "fs": fs,
            "tool": tool.key,
            "label": tool.label,
            "source": source,
            "rounds": rounds,
        }
        if tool.key in skip and not runs[tool.key]:
            row.update(unavailable=True, error=skip[tool.key], times=[], median_s=None)
        else:
            _summarise(row, runs[tool.key])
        rows.append(row)

    # One more, untimed run of cowpath with tracemalloc and a CopyReport.
    cowpath_row = next(row for row in rows if row["tool"] == "cowpath")
    if cowpath_row["median_s"] is not None:
        tool = next(t for t in tools if t.key == "cowpath")
        traced = _measure(
            case, tool, src, os.path.join(mount, f"dst-{case}-trace"), mount, scratch, workload, trace=True
        )
        if traced["ok"]:
            cowpath_row["tracemalloc_peak"] = traced.get("tracemalloc_peak")
            cowpath_row["report"] = traced.get("report")
    _remove(src)
    os.sync()
    report.add_ratios(rows)
    return rows


def _probe_libraries() -> tuple[dict[str, str], dict[str, str]]:
    """(versions, unavailable reasons) of the PyPI libraries, as the workers will see them."""
    code = (
        "import json\n"
        "from bench.tools import Unavailable, library_versions, resolve\n"
        "bad = {}\n"
        "for key in ('reflink-copy', 'reflink'):\n"
        "    try:\n"
        "        resolve('file', key)\n"
        "    except Unavailable as exc:\n"
        "        bad[key] = str(exc)\n"
        "print(json.dumps([library_versions(), bad]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_worker_env(), capture_output=True, text=True, check=True
    )
    versions, bad = json.loads(done.stdout)
    for name in ("reflink-copy", "reflink"):
        if name not in versions and name not in bad:
            bad[name] = f"{name} is not installed (pip install -e '.[bench]')"
    return versions, bad


def _command_version(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True)
    except OSError:
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def _git_state() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cowpath"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head} + uncommitted changes to cowpath/" if dirty else head


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _image_size(workload: Workload) -> int:
    # Room for the source and one copy of each case at once, plus metadata.
    tree = workload.tree.files * 20_000
    need = 2 * (workload.file.size + tree) + GIB
    return max(2, math.ceil(need / GIB)) * GIB


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="cowpath against shutil, cp --reflink=auto and the PyPI clone libraries "
        "on loop-mounted XFS, btrfs and ext4 (needs root).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small tree, 64 MiB file, 2 rounds (a smoke test)"
    )
    parser.add_argument(
        "--cases",
        default=",".join(ALL_CASES),
        help="comma-separated: tree,file,dedupe (dedupe: cowpath dedupe against jdupes -B and duperemove, "
        "on XFS and btrfs; see bench/dedupe.py)",
    )
    parser.add_argument(
        "--filesystems", default=",".join(FILESYSTEMS), help="comma-separated: xfs,btrfs,ext4"
    )
    parser.add_argument("--rounds", type=int, help="rounds per tool (default 5, or 2 with --quick)")
    parser.add_argument("--tree-files", type=int, help="files in the tree (default 10000)")
    parser.add_argument("--tree-dirs", type=int, help="directories in the tree (default 200)")
    parser.add_argument("--file-mib", type=int, help="size of the single file in MiB (default 1024)")
    parser.add_argument("--results-dir", default=RESULTS_DIR, help="where the JSON results go")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="make this run's results docs/data/benchmark.json's and regenerate every figure in the docs, "
        "the README and docs/images/benchmark*.png from it (without it, no tracked file is touched)",
    )
    # Accepted for old command lines: leaving the docs alone is the default.
    parser.add_argument("--no-docs", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: print the table of FILE (with --update-docs, make it the docs' results)",
    )
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    args.filesystems = [f for f in args.filesystems.split(",") if f]
    for case in args.cases:
        if case not in ALL_CASES:
            parser.error(f"unknown case {case!r} (choose from {', '.join(ALL_CASES)})")
    for fs in args.filesystems:
        if fs not in FILESYSTEMS:
            parser.error(f"unknown filesystem {fs!r} (choose from {', '.join(FILESYSTEMS)})")
    if args.update_docs and args.quick:
        parser.error("--update-docs needs a full run, not --quick")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _workload(args: argparse.Namespace) -> Workload:
    workload = QUICK if args.quick else FULL
    tree = workload.tree
    if args.tree_files:
        tree = replace(tree, files=args.tree_files)
    if args.tree_dirs:
        tree = replace(tree, dirs=args.tree_dirs)
    file = workload.file
    if args.file_mib:
        file = replace(file, size=args.file_mib * MIB)
    return Workload(tree, file)


def _render(data: dict[str, Any], write_docs: bool) -> None:
    print(report.markdown(data))
    if write_docs:
        from bench import docs

        docs.save("copy", data)
        _log(f"updated {os.path.relpath(docs.DATA, ROOT)}")
        for path in docs.render_pages(docs.load()):
            _log(f"wrote {os.path.relpath(path, ROOT)}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds through the finally blocks that unmount and clean up.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    write_docs = args.update_docs
    if args.from_json:
        with open(args.from_json) as f:
            _render(json.load(f), write_docs)
        return 0

    workload = _workload(args)
    rounds = args.rounds or (2 if args.quick else 5)
    versions, unavailable = _probe_libraries()
    for name, reason in unavailable.items():
        _log(f"{name}: unavailable ({reason})")
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "cowpath_commit": _git_state(),
        "versions": versions,
        "unavailable": unavailable,
        "cp": _command_version(["cp", "--version"]),
        "mkfs.xfs": _command_version(["mkfs.xfs", "-V"]),
        "mkfs.btrfs": _command_version(["mkfs.btrfs", "--version"]),
        "rounds": rounds,
        "quick": args.quick,
        "workload": workload.describe(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    if os.geteuid() == 0:
        meta["drop_caches"] = _drop_caches()
    else:
        meta["drop_caches"] = False
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    started = time.perf_counter()
    copy_cases = [case for case in args.cases if case in CASES]
    with scratch_dir() as scratch:
        for fs in args.filesystems if copy_cases else ():
            try:
                with loop_filesystem(fs, scratch, _image_size(workload)) as mount:
                    for case in copy_cases:
                        rows.extend(run_case(case, fs, mount, scratch, workload, rounds, unavailable))
            except LoopFsError as exc:
                _log(f"[{fs}] skipped: {exc}")
                failures.append(f"{fs}: {exc}")
    if "dedupe" in args.cases:
        kinds = [fs for fs in args.filesystems if fs in dedupe.DEDUPE_FILESYSTEMS]
        if dedupe.measure(
            kinds, quick=args.quick, rounds=args.rounds, results_dir=args.results_dir, docs=write_docs
        ):
            failures.append("dedupe: a tool failed or a filesystem could not be made")
        name = "dedupe-quick.json" if args.quick else "dedupe-latest.json"
        meta["dedupe_results"] = os.path.join(args.results_dir, name)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["failures"] = failures
    data = {"meta": meta, "results": rows}

    os.makedirs(args.results_dir, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kind = "quick" if args.quick else "full"
    path = os.path.join(args.results_dir, f"{stamp}-{kind}.json")
    for target in (path, os.path.join(args.results_dir, f"latest-{kind}.json")):
        with open(target, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    _log(f"results: {os.path.relpath(path, ROOT) if path.startswith(ROOT) else path}")
    if rows:
        _render(data, write_docs and not failures)
    return 1 if failures else 0
