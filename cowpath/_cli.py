"""The ``cowpath`` command: ``cowpath cp``, ``cowpath mv``, ``cowpath check`` and ``cowpath clean``.

``cowpath dedupe`` and ``cowpath du`` are in :mod:`cowpath._clidedupe`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from . import __version__
from ._clidedupe import add_commands as _add_dedupe_commands
from ._cliutil import PROG
from ._cliutil import Bar as _Bar
from ._cliutil import OutputClosed as _OutputClosed
from ._cliutil import human_size as _size
from ._cliutil import name_safe_output as _name_safe_output
from ._cliutil import say as _say
from ._cliutil import tell as _tell
from ._cliutil import why as _why
from ._common import REFLINK_MODES, resolve_mode
from ._copy import copy, copy2, copytree
from ._fsinfo import advice, mount_of
from ._move import move_with_progress
from ._probe import supports_reflink
from ._report import CopyReport
from ._stale import clean_staging
from ._tree import WORKERS_DEFAULT

__all__ = ["main"]

# More threads than this only contend for the same disks (and a typo such
# as 10000000 would fail to start them).
_MAX_WORKERS: Final = 256


def _operands(paths: list[str]) -> tuple[list[str], str, bool] | int:
    """(sources, destination, whether it is a directory), as cp and mv read them; else the exit status."""
    *sources, dest = paths
    if not sources:
        _say(f"missing destination file operand after '{dest}'")
        return 2
    try:
        dest_is_dir = stat.S_ISDIR(os.stat(dest).st_mode)
        refused = None
    except OSError as exc:
        dest_is_dir = False
        refused = None if exc.errno in (errno.ENOENT, errno.ENOTDIR) else exc
    if (len(sources) > 1 or dest.endswith(os.sep)) and not dest_is_dir:
        # As cp: a directory it may not look into is not called "not a directory".
        _say(f"target '{dest}': {_why(refused)}" if refused else f"target '{dest}' is not a directory")
        return 1
    return sources, dest, dest_is_dir


def _bar_for(args: argparse.Namespace) -> _Bar:
    """The progress bar --progress, -v and -q ask for (by default: when stderr is a terminal)."""
    show = args.progress if args.progress is not None else sys.stderr.isatty() and not args.verbose
    return _Bar(show and not args.quiet, asked=args.progress is True)


def _target_of(src: str, dest: str, dest_is_dir: bool) -> str:
    name = os.path.basename(src.rstrip(os.sep)) or src
    return os.path.join(dest, name) if dest_is_dir else dest


def _cp(args: argparse.Namespace) -> int:
    operands = _operands(args.paths)
    if isinstance(operands, int):
        return operands
    sources, dest, dest_is_dir = operands
    report = CopyReport()
    function = copy2 if args.preserve else copy
    verbose_function: Callable[[Any, Any], object] | None = None
    if args.verbose:

        def verbose_function(s: Any, d: Any) -> object:
            result = function(s, d, reflink=args.reflink, report=report)
            _tell(f"'{os.fsdecode(s)}' -> '{os.fsdecode(d)}'")
            return result

    bar = _bar_for(args)
    status = 0
    try:
        for src in sources:
            target = _target_of(src, dest, dest_is_dir)
            if os.path.isdir(src) and not (os.path.islink(src) and args.recursive):
                if not args.recursive:
                    _say(f"-r not specified; omitting directory '{src}'")
                    status = 1
                    continue
                real_src, real_target = os.path.realpath(src), os.path.realpath(target)
                if real_target == real_src or real_target.startswith(real_src.rstrip(os.sep) + os.sep):
                    _say(f"cannot copy a directory, '{src}', into itself, '{target}'")
                    status = 1
                    continue
                try:
                    if verbose_function is not None:
                        copytree(
                            src, target, symlinks=True, copy_function=verbose_function, dirs_exist_ok=True
                        )
                    else:
                        try:
                            copytree(
                                src,
                                target,
                                symlinks=True,
                                copy_function=function,
                                dirs_exist_ok=True,
                                reflink=args.reflink,
                                report=report,
                                workers=args.workers,
                                progress=bar.update,
                            )
                        finally:
                            bar.close()  # before the errors are listed
                except shutil.Error as exc:
                    for failed_src, failed_dst, why in exc.args[0]:
                        _say(f"cannot copy '{failed_src}' to '{failed_dst}': {why}")
                    status = 1
                except OSError as exc:
                    _say(f"cannot copy '{src}' to '{target}': {_why(exc)}")
                    status = 1
            else:
                try:
                    if args.recursive and os.path.islink(src):
                        # cp -r copies a symlink named on the command line as a link.
                        function(src, target, follow_symlinks=False, reflink=args.reflink, report=report)
                    elif verbose_function is not None:
                        verbose_function(src, target)
                    else:
                        function(src, target, reflink=args.reflink, report=report)
                except OSError as exc:
                    _say(f"cannot copy '{src}' to '{target}': {_why(exc)}")
                    status = 1
    except KeyboardInterrupt:
        bar.close()
        _say("interrupted; every file written so far is complete")
        return 130
    bar.close()
    # The summary only when a file was written: after errors alone, a line
    # of zeros would read as if something had happened.
    if not args.quiet and report.files_cloned + report.files_copied:
        _say(
            f"{report.files_cloned} file{'' if report.files_cloned == 1 else 's'} cloned "
            f"({_size(report.bytes_cloned)} shared), "
            f"{report.files_copied} copied ({_size(report.bytes_copied)})"
        )
    return status


def _mv_target(src: str, target: str) -> str | None:
    """Why ``src`` cannot replace ``target`` as GNU mv sees it, or None."""
    if not os.path.lexists(target) or os.path.islink(target):
        return None
    source_is_dir = os.path.isdir(src) and not os.path.islink(src)
    if os.path.isdir(target):
        if not source_is_dir:
            return f"cannot overwrite directory '{target}' with non-directory"
        if os.listdir(target):
            return f"cannot move '{src}' to '{target}': Directory not empty"
        return None
    if source_is_dir:
        return f"cannot overwrite non-directory '{target}' with directory '{src}'"
    return None


def _mv(args: argparse.Namespace) -> int:
    operands = _operands(args.paths)
    if isinstance(operands, int):
        return operands
    sources, dest, dest_is_dir = operands
    report = CopyReport()
    bar = _bar_for(args)
    status = 0
    try:
        for src in sources:
            target = _target_of(src, dest, dest_is_dir)
            try:
                refused = _mv_target(src, target)
                if refused is not None:
                    _say(refused)
                    status = 1
                    continue
                if os.path.isdir(target) and not os.path.islink(target):
                    # An empty directory is replaced, as mv replaces it.
                    os.rmdir(target)
                before = (report.files_cloned, report.files_copied)
                try:
                    move_with_progress(src, target, copy2, args.reflink, report, bar.update)
                finally:
                    bar.close()  # before an error is said
            except shutil.Error as exc:
                failures = exc.args[0] if exc.args and isinstance(exc.args[0], list) else None
                if failures is None:
                    _say(f"cannot move '{src}' to '{target}': {exc}")
                for failed_src, failed_dst, why in failures or ():
                    _say(f"cannot move '{failed_src}' to '{failed_dst}': {why}")
                status = 1
            except OSError as exc:
                _say(f"cannot move '{src}' to '{target}': {_why(exc)}")
                status = 1
            else:
                if args.verbose:
                    _tell(_mv_verbose(src, target, report, before))
    except KeyboardInterrupt:
        bar.close()
        _say("interrupted; every source is whole where its destination is not")
        return 130
    bar.close()
    if not args.quiet:
        summary = _mv_summary(report)
        if summary:
            _say(summary)
    return status


def _mv_verbose(src: str, target: str, report: CopyReport, before: tuple[int, int]) -> str:
    """What -v says of one source moved: renamed, or cloned or copied and then removed, as GNU mv says."""
    cloned = report.files_cloned - before[0]
    copied = report.files_copied - before[1]
    if not cloned and not copied:
        return f"renamed '{src}' -> '{target}'"
    return f"{'copied' if copied else 'cloned'} '{src}' -> '{target}'\nremoved '{src}'"


def _mv_summary(report: CopyReport) -> str:
    """What a move did, naming only the ways files actually went (renamed, cloned, copied)."""
    parts = [
        (report.files_renamed, "renamed", _size(report.bytes_renamed)),
        (report.files_cloned, "cloned", f"{_size(report.bytes_cloned)} shared"),
        (report.files_copied, "copied", _size(report.bytes_copied)),
    ]
    said: list[str] = []
    for count, verb, size in parts:
        if count:
            noun = "" if said else " file" if count == 1 else " files"
            said.append(f"{count}{noun} {verb} ({size})")
    return ", ".join(said)


def _clean(args: argparse.Namespace) -> int:
    status = 0
    removed = 0
    for directory in args.directories:
        try:
            gone = clean_staging(directory)
        except OSError as exc:
            _say(f"cannot clean '{directory}': {_why(exc)}")
            status = 1
            continue
        removed += len(gone)
        if args.verbose:
            for path in gone:
                print(f"removed '{os.fsdecode(path)}'")
    if not args.quiet and (removed or not status):
        _say(f"{removed} stale staging director{'y' if removed == 1 else 'ies'} removed")
    return status


def _usage(command: str) -> str:
    """cp's and mv's two forms, as GNU cp and mv show them."""
    return f"{PROG} {command} [OPTIONS] SRC DEST\n       {PROG} {command} [OPTIONS] SRC... DIRECTORY"


def _add_operands(parser: argparse.ArgumentParser, done: str) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="SRC... DEST",
        help=f"the last is the destination: a new name for one SRC, or the directory each SRC is {done} into",
    )


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if not 1 <= workers <= _MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"not a number of threads from 1 to {_MAX_WORKERS}: {text!r}")
    return workers


def _add_copy_options(parser: argparse.ArgumentParser, verbose: str, progress: str) -> None:
    """--reflink, -v, -q and --progress, which cp and mv share."""
    parser.add_argument(
        "--reflink",
        choices=REFLINK_MODES,
        default=None,
        help="auto: clone where possible, else copy (default, or $COWPATH_REFLINK); "
        "always: clone or fail; never: always copy",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary, no progress bar")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"{progress} (default: when stderr is a terminal; needs tqdm: pip install 'cowpath[cli]')",
    )


def _add_mv_and_clean(commands: Any) -> None:
    mv = commands.add_parser(
        "mv",
        usage=_usage("mv"),
        help="move files and directories, cloning where a rename is refused",
        description="Move SRC to DEST, or each SRC into DIRECTORY. Where rename is "
        "refused (another filesystem, btrfs subvolume or bind mount) the data is cloned where "
        "possible, else copied, and the source removed once the destination is complete.",
    )
    _add_copy_options(mv, "print each source moved", "progress bar for directories copied")
    _add_operands(mv, "moved")
    mv.set_defaults(run=_mv)

    clean = commands.add_parser(
        "clean",
        help="remove the staging directories that killed copies and moves left behind",
        description="Remove the hidden .cowpath-* staging directories in each DIR whose copy or "
        "move is no longer running (a running one holds a lock on its own). Only your own are "
        "removed; symlinks are never followed.",
    )
    clean.add_argument("-v", "--verbose", action="store_true", help="print each directory removed")
    clean.add_argument("-q", "--quiet", action="store_true", help="no summary")
    clean.add_argument("directories", nargs="+", metavar="DIR")
    clean.set_defaults(run=_clean)


def _check(args: argparse.Namespace) -> int:
    paths = [args.path] if args.other is None else [args.path, args.other]
    mounts = []
    for path in paths:
        if not os.path.exists(path) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            _say(f"cannot check '{path}': No such file or directory")
            return 2
        where = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
        mount = mount_of(where)
        mounts.append(mount)
        if mount is not None:
            print(f"{path}: {mount.fstype} on {mount.device}, mounted at {mount.point}")
        else:
            print(f"{path}: filesystem type unknown")
    try:
        works = supports_reflink(args.path, args.other)
    except OSError as exc:
        _say(f"cannot check '{exc.filename or args.path}': {_why(exc)}")
        return 2
    subject = "clones here" if args.other is None else "clones between them"
    if works:
        print(f"{subject}: yes")
        return 0
    second = mounts[1] if len(mounts) > 1 else None
    same_device = len(paths) == 1 or _same_device(paths)
    print(f"{subject}: no: {advice(mounts[0], second, same_device)}")
    return 1


def _same_device(paths: list[str]) -> bool:
    devices = set()
    for path in paths:
        where = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
        devices.add(os.stat(where).st_dev)
    return len(devices) == 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Copies that clone (copy-on-write) wherever the filesystem can."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    cp = commands.add_parser(
        "cp",
        usage=_usage("cp"),
        help="copy files and directories, cloning where possible",
        description="Copy SRC to DEST, or each SRC into DIRECTORY, cloning where possible.",
    )
    cp.add_argument("-r", "-R", "--recursive", action="store_true", help="copy directories recursively")
    cp.add_argument(
        "-p", "--preserve", action="store_true", help="keep mode, timestamps and extended attributes"
    )
    _add_copy_options(cp, "print each file copied", "progress bar for directories")
    cp.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help=f"how many copy at once, 1 to {_MAX_WORKERS} (default: {WORKERS_DEFAULT})",
    )
    _add_operands(cp, "copied")
    cp.set_defaults(run=_cp)

    check = commands.add_parser(
        "check",
        help="tell whether clones work in a directory or between two",
        description="Show the filesystem of PATH (and OTHER) and whether files can be cloned there.",
    )
    check.add_argument("path", metavar="PATH")
    check.add_argument("other", metavar="OTHER", nargs="?")
    check.set_defaults(run=_check)
    _add_mv_and_clean(commands)
    _add_dedupe_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    _name_safe_output()
    try:
        args = _parser().parse_args(argv)
        if getattr(args, "reflink", "") is None:
            # $COWPATH_REFLINK, checked before anything is copied.
            try:
                args.reflink = resolve_mode(None)
            except ValueError as exc:
                _say(str(exc))
                return 2
        run: Callable[[argparse.Namespace], int] = args.run
        status = run(args)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at exit
        return status
    except KeyboardInterrupt:
        # cp, mv and dedupe say what an interrupt leaves; elsewhere nothing was changed.
        return 130
    except (BrokenPipeError, _OutputClosed):
        # The reader went away (cowpath du | head): stop quietly, as the
        # coreutils stop on SIGPIPE. Later writes, and the flush at exit,
        # go nowhere instead of raising again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 128 + getattr(signal, "SIGPIPE", 13)
    except OSError as exc:
        # A last resort: each command reports the errors it expects with
        # its own words; anything else still gets one line, not a traceback.
        names = " ".join(f"'{os.fsdecode(n)}'" for n in (exc.filename, exc.filename2) if n is not None)
        _say(f"{names}: {_why(exc)}" if names else _why(exc))
        return 1
