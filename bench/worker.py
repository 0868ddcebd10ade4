"""One measurement of one Python tool, in a fresh interpreter.

``python -m bench.worker CASE TOOL SRC DST [--trace]`` imports the tool,
syncs, then times the single copy call and prints one JSON line: the wall
time, the process's peak RSS (VmHWM) before and after the call (``ru_maxrss`` is a
high-water mark, so the difference is what the copy itself added), and with
``--trace`` (an untimed run: tracing slows Python down) the peak of
Python-level allocations seen by :mod:`tracemalloc` and, for cowpath, its
:class:`cowpath.CopyReport`. For the single file it also times the same call
once more to a second destination: the warm, steady-state cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

from bench.tools import CASES, TREE_CASES, Case, Unavailable, resolve


def _maxrss_kib() -> int:
    """This process's peak resident set, in KiB.

    VmHWM is the high-water mark of this process's own address space.
    ``ru_maxrss`` is not used: it survives ``exec``, so a worker started by
    vfork (as subprocess and posix_spawn may do) would report its parent's
    peak instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _watch_helpers(peaks: list[int]) -> None:
    """Append the memory (KiB) each cowpath helper process has of its own to ``peaks`` as it ends.

    Private pages only (``Private_Clean`` + ``Private_Dirty``): a forked
    helper shares the caller's pages until one side writes them, and its
    ``VmHWM`` would count those again.
    """
    from cowpath import _procs

    close = _procs.Helper.close

    def closing(helper: _procs.Helper) -> None:
        try:
            with open(f"/proc/{helper.pid}/smaps_rollup") as f:
                private = ("Private_Clean:", "Private_Dirty:")
                own = [int(line.split()[1]) for line in f if line.startswith(private)]
            peaks.append(sum(own))
        except OSError:
            pass
        close(helper)

    _procs.Helper.close = closing  # type: ignore[method-assign,assignment]


def measure(case: Case, key: str, src: str, dst: str, trace: bool) -> dict[str, Any]:
    try:
        copy = resolve(case, key)
    except Unavailable as exc:
        return {"ok": False, "unavailable": True, "error": str(exc)}
    kwargs: dict[str, Any] = {}
    report = None
    if trace and key == "cowpath":
        import cowpath

        report = cowpath.CopyReport()
        kwargs["report"] = report
    helpers: list[int] = []
    if case in TREE_CASES and key.startswith("cowpath"):
        _watch_helpers(helpers)
    os.sync()
    before = _maxrss_kib()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        copy(src, dst, **kwargs)
    except Unavailable as exc:
        return {"ok": False, "unavailable": True, "error": str(exc)}
    except Exception as exc:
        return {"ok": False, "unavailable": False, "error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "ok": True,
        "seconds": seconds,
        "maxrss_before_kib": before,
        "maxrss_kib": _maxrss_kib(),
    }
    if trace:
        result["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if case == "file" and not trace:
        # The same call again in the same process, to a second new
        # destination: what each further file costs once the process and
        # the source's metadata are warm (the first call also pays lazy
        # imports and setup). Synced first, as the first call was: a data
        # copy leaves its whole file dirty in the page cache, and a second
        # copy started on top of it competes with that writeback (unsynced,
        # the 2nd data copy took up to several times the first's time).
        # The sync's own time is kept as again_sync_seconds.
        again = dst + ".again"
        start = time.perf_counter()
        os.sync()
        result["again_sync_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        copy(src, again)
        result["again_seconds"] = time.perf_counter() - start
        os.unlink(again)
    if helpers:
        # What each helper had of its own, added up.
        result["helpers"] = len(helpers)
        result["helpers_private_kib"] = sum(helpers)
    if report is not None:
        result["report"] = {
            "files_cloned": report.files_cloned,
            "bytes_cloned": report.bytes_cloned,
            "files_copied": report.files_copied,
            "bytes_copied": report.bytes_copied,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("case", choices=CASES)
    parser.add_argument("tool")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args(argv)
    case: Case = next(c for c in CASES if c == args.case)
    result = measure(case, args.tool, args.src, args.dst, args.trace)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
