"""The ``cowpath dedupe`` and ``cowpath du`` subcommands."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from ._backend import Backend
from ._cliutil import Bar, human_size, say
from ._dedupe import open_quietly
from ._dedupetree import Name, Summary, dedupe_paths, walk
from ._errors import CannotClone
from ._extents import Usage
from ._select import backend

__all__ = ["add_commands"]

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _byte_count(text: str) -> int:
    """A size such as 4096, 4K, 1.5M or 2GiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 4096, 64K, 1M)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _shown(path: Name) -> str:
    return os.fsdecode(path)


def _free_bytes(paths: list[str]) -> int | None:
    """Free bytes of the filesystems holding ``paths``, each counted once, after syncing them.

    Freed extents are returned to the free space when the filesystem
    commits (btrfs at its next transaction): each filesystem is synced
    first so that the numbers before and after compare. Only these
    filesystems: a system-wide ``sync`` waits for every other disk's
    writes too.
    """
    if sys.platform == "win32":
        return None  # no statvfs; and no dedupe there either
    seen: set[int] = set()
    total = 0
    for path in paths:
        try:
            device = os.stat(path).st_dev
            if device in seen:
                continue
            seen.add(device)
            _sync_filesystem(path)
            st = os.statvfs(path)
        except OSError:
            continue
        total += st.f_bfree * st.f_frsize
    return total if seen else None


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(2)`` (Linux), which Python's os module lacks; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only here: the command's start-up stays free of it

    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


def _sync_filesystem(path: str) -> None:
    """Commit the filesystem holding ``path`` (``syncfs``), or every filesystem where that is missing."""
    if sys.platform == "win32":
        return  # no sync there, and no free space measured (see _free_bytes)
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if syncfs(fd) != 0:
            os.sync()  # syncfs can fail (EIO, or ENOSYS under seccomp): the global sync still works
    finally:
        os.close(fd)


def _dedupe(args: argparse.Namespace) -> int:
    before = None if args.dry_run else _free_bytes(args.paths)
    show_bar = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = Bar(show_bar and not args.json, asked=args.progress is True)
    try:
        summary = dedupe_paths(
            args.paths,
            recursive=args.recursive,
            min_size=args.min_size,
            dry_run=args.dry_run,
            progress=bar.update if bar.tqdm is not None else None,
        )
    except KeyboardInterrupt:
        bar.close()
        say("interrupted; every file is as it was or shares identical data")
        return 130
    bar.close()
    after = None if args.dry_run else _free_bytes(args.paths)
    reclaimed = None if before is None or after is None else after - before
    for path, why in sorted(summary.failures, key=lambda f: os.fsencode(f[0])):
        say(f"cannot dedupe '{_shown(path)}': {why}")
    if args.json:
        import json  # only here: a summary in words needs no JSON encoder

        json.dump(_as_json(summary, args.dry_run, reclaimed), sys.stdout, indent=2)
        print()
    elif summary.files_examined or not summary.failures:
        # After errors alone, a summary of zeros would say nothing.
        _print_summary(summary, args.dry_run, reclaimed)
    return 1 if summary.failures else 0


def _as_json(summary: Summary, dry_run: bool, reclaimed: int | None) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "files_examined": summary.files_examined,
        "groups": [
            {"source": _shown(g.src), "size": g.size, "duplicates": [_shown(d) for d in g.dups]}
            for g in summary.groups
        ],
        "files_deduped": summary.files_deduped,
        "bytes_deduped": summary.bytes_deduped,
        "files_already_shared": summary.already_shared,
        "bytes_reclaimed": reclaimed,
        "failures": [{"path": _shown(p), "error": why} for p, why in summary.failures],
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_summary(summary: Summary, dry_run: bool, reclaimed: int | None) -> None:
    if dry_run:
        for group in summary.groups:
            for dup in group.dups:
                print(f"would dedupe '{_shown(dup)}' onto '{_shown(group.src)}' ({human_size(group.size)})")
    verb = "would share" if dry_run else "now share"
    print(
        f"{_count(summary.files_examined, 'file')} examined, "
        f"{_count(len(summary.groups), 'group')} of identical files"
    )
    print(
        f"{_count(summary.files_deduped, 'file')} {verb} {human_size(summary.bytes_deduped)} "
        f"({summary.already_shared} already shared)"
    )
    if reclaimed is not None:
        print(f"space reclaimed: {human_size(max(reclaimed, 0))} (free space before and after)")


def _du(args: argparse.Namespace) -> int:
    chosen = backend()
    fmt: Callable[[int], str] = str if args.bytes else human_size
    status = 0
    print(f"{'Total':>10}  {'Exclusive':>10}  {'Set shared':>10}  Filename")
    for top in args.paths:
        if not _du_path(top, chosen, fmt, args.summarize):
            status = 1
    return status


def _du_path(top: str, chosen: Backend, fmt: Callable[[int], str], summarize: bool) -> bool:
    """Print the lines of one PATH of ``cowpath du``; False when some file could not be measured."""
    summary = Summary()
    usage = Usage()
    inodes: set[tuple[int, int]] = set()
    # Files a filesystem cannot map (tmpfs, ext4 without FIEMAP...), by
    # reason: said once, not once for each of its files.
    unmapped: dict[str, list[Name]] = {}
    measured = 0
    for found in walk([top], True, summary):
        key = (found.st.st_dev, found.st.st_ino)
        if key in inodes:
            continue  # another name of a file already counted
        inodes.add(key)
        try:
            fd = open_quietly(found.path, follow=False)
            try:
                extents = chosen.extents(fd)
            finally:
                os.close(fd)
        except CannotClone as signal:
            unmapped.setdefault(f"{os.strerror(signal.errno)} ({signal.detail})", []).append(found.path)
            continue
        except OSError as exc:
            summary.fail(found.path, exc.strerror or str(exc))
            continue
        mine = Usage()
        mine.add(extents)
        usage.merge(mine)
        measured += 1
        if not summarize:
            print(f"{fmt(mine.total):>10}  {fmt(mine.exclusive):>10}  {'-':>10}  {_shown(found.path)}")
    for path, why in summary.failures:
        say(f"cannot read '{_shown(path)}': {why}")
    for why, paths in unmapped.items():
        if len(paths) == 1:
            say(f"cannot read '{_shown(paths[0])}': {why}")
        else:
            say(f"cannot read {len(paths)} files under '{top}', such as '{_shown(paths[0])}': {why}")
    failed = bool(summary.failures or unmapped)
    if not measured and failed:
        return False  # nothing measured: no line of zeros for PATH
    print(f"{fmt(usage.total):>10}  {fmt(usage.exclusive):>10}  {fmt(usage.set_shared):>10}  {top}")
    return not failed


def add_commands(commands: Any) -> None:
    """Add ``dedupe`` and ``du`` to the ``cowpath`` command's subparsers."""
    dedupe = commands.add_parser(
        "dedupe",
        help="make identical files share their storage",
        description="Find identical regular files among PATHs and make them share their storage "
        "(Linux btrfs and XFS). The kernel compares the data itself and shares only what is equal: "
        "no file's content, inode, mode, owner, times or extended attributes change.",
    )
    dedupe.add_argument("-r", "--recursive", action="store_true", help="look into directories recursively")
    dedupe.add_argument("--dry-run", action="store_true", help="change nothing; say what would be shared")
    dedupe.add_argument(
        "--min-size",
        type=_byte_count,
        default=1,
        metavar="N",
        help="skip files smaller than N bytes (suffixes K, M, G; default 1)",
    )
    dedupe.add_argument("--json", action="store_true", help="print the summary as JSON")
    dedupe.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal; needs tqdm: pip install 'cowpath[cli]')",
    )
    dedupe.add_argument("paths", nargs="+", metavar="PATH")
    dedupe.set_defaults(run=_dedupe)

    du = commands.add_parser(
        "du",
        help="disk usage counting shared extents once",
        description="Show how much data files hold, how much of it is theirs alone (exclusive) and how "
        "much is shared, each shared extent counted once (as btrfs filesystem du; on XFS too).",
    )
    du.add_argument("-s", "--summarize", action="store_true", help="only a total for each PATH")
    du.add_argument("--bytes", action="store_true", help="sizes in bytes")
    du.add_argument("paths", nargs="+", metavar="PATH")
    du.set_defaults(run=_du)
