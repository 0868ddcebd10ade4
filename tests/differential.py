"""One scenario through shutil and through cowpath, and all that a caller can observe of each.

A scenario is set up twice, in two sibling areas of one filesystem, and run
in a forked child (as root or as ``nobody``, optionally under a file size
limit, ``RLIMIT_FSIZE``, that makes writes past it fail with ``EFBIG``).
What is compared: the return value or the exception (type, errno, names,
message, and shutil.Error's list), with the area's path replaced by
``ROOT``; and every entry of the area afterwards: type, mode (special bits
included), owner and group, content or link text, extended attributes
(POSIX ACLs among them), modification time, and which names share an inode.

Modification times: a setup ends by giving every entry a time from before
:data:`NEW_AFTER`; a time after it means "changed by the copy" and is
compared as ``"new"`` (two runs never happen in the same nanosecond).
Access times are not compared: reading changes them (see
docs/migrating.md).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cowpath
from tests.faultutil import SmallFilesystems, in_child

MODULES: dict[str, Any] = {"shutil": shutil, "cowpath": cowpath}
# 2023-11-14: a setup's times are older, a copy's are newer (the clock is past it).
NEW_AFTER = 1_700_000_000 * 10**9
OLD_TIME = 1_000_000_000 * 10**9
# shutil.copytree lists a SameFileError raised inside a tree as the
# characters of its message (it catches it as shutil.Error, its base class,
# and extends its list with err.args[0]); cowpath lists (src, dst, message).
# Both are compared as the message alone: the one deliberate difference.
_SAME_FILE = " are the same file"


class Areas:
    """A filesystem of each kind, made once per module, that ``nobody`` may enter."""

    def __init__(self) -> None:
        self.small = SmallFilesystems()
        self.points: dict[str, Path] = {}

    def fresh(self, kind: str) -> Path:
        """A new empty directory (mode 0755) on a filesystem of ``kind``."""
        if kind not in self.points:
            # Room for many examples: btrfs gives freed space back only
            # when a transaction commits.
            self.points[kind] = self.small.make(kind, 512)
        path = self.points[kind] / uuid.uuid4().hex
        path.mkdir()
        os.chmod(path, 0o755)
        return path

    def close(self) -> None:
        self.small.close()


def areas_fixture() -> Iterator[Areas]:
    areas = Areas()
    yield areas
    areas.close()


# -- what a call did ---------------------------------------------------------------


def normalise(value: Any, root: Path) -> Any:
    """``value`` with the area's path replaced by ROOT, in anything picklable."""
    text = str(root)
    if isinstance(value, os.DirEntry):
        return ("DirEntry", normalise(value.path, root))
    if isinstance(value, bytes):
        return value.replace(os.fsencode(text), b"ROOT")
    if isinstance(value, str):
        return value.replace(text, "ROOT")
    if isinstance(value, os.PathLike):
        return (type(value).__name__, normalise(os.fspath(value), root))
    if isinstance(value, (list, tuple)):
        return type(value)(normalise(item, root) for item in value)
    return value


def error_list(errors: Any, root: Path) -> Any:
    """shutil.Error's list, normalised, with SameFileError entries as their message."""
    if not isinstance(errors, list):
        return normalise(errors, root)
    out: list[Any] = []
    chars: list[str] = []
    for item in errors:
        if isinstance(item, str) and len(item) == 1:
            chars.append(item)
            continue
        if chars:
            out.append(normalise("".join(chars), root))
            chars = []
        if isinstance(item, tuple) and len(item) == 3 and str(item[2]).endswith(_SAME_FILE):
            out.append(normalise(item[2], root))
        else:
            out.append(normalise(item, root))
    if chars:
        out.append(normalise("".join(chars), root))
    return out


def outcome(call: Callable[[], Any], root: Path) -> tuple[Any, ...]:
    """What a caller observes of ``call()``: its result, or its exception in detail."""
    try:
        result = call()
    except Exception as exc:
        if isinstance(exc, shutil.Error) and not isinstance(exc, shutil.SameFileError):
            detail = error_list(exc.args[0] if exc.args else None, root)
        else:
            detail = normalise(str(exc), root)
        return (
            "raised",
            type(exc),
            getattr(exc, "errno", None),
            normalise(getattr(exc, "filename", None), root),
            normalise(getattr(exc, "filename2", None), root),
            detail,
        )
    return ("returned", normalise(result, root))


# -- what a tree holds -------------------------------------------------------------


def snapshot(root: Path) -> dict[bytes, tuple[Any, ...]]:
    """Every entry under ``root`` (not ``root`` itself), keyed by relative bytes path."""
    base = os.fsencode(str(root))
    found: dict[bytes, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    stats: dict[bytes, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, base)
            stats[rel] = st
            if not stat.S_ISDIR(st.st_mode):
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for rel, st in stats.items():
        path = os.path.join(base, rel)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            with open(path, "rb") as f:
                body: Any = f.read()
        elif stat.S_ISLNK(mode):
            body = os.readlink(path).replace(base, b"ROOT")
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            body = st.st_rdev
        else:
            body = None
        xattrs: tuple[Any, ...]
        try:
            names = sorted(os.listxattr(path, follow_symlinks=False))
            xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
        except OSError:
            xattrs = ("unsupported",)
        when = st.st_mtime_ns if st.st_mtime_ns < NEW_AFTER else "new"
        links = tuple(sorted(inodes.get((st.st_dev, st.st_ino), [])))
        found[rel] = (
            oct(mode),
            st.st_uid,
            st.st_gid,
            body,
            xattrs,
            when,
            links if len(links) > 1 else (),
        )
    return found


def age(root: Path, when_ns: int = OLD_TIME) -> None:
    """Give everything under ``root`` (and ``root``) a modification time before :data:`NEW_AFTER`."""
    for dirpath, dirnames, filenames in os.walk(os.fsencode(str(root)), topdown=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime_ns >= NEW_AFTER:
                os.utime(path, ns=(when_ns, when_ns), follow_symlinks=False)
        st = os.lstat(dirpath)
        if st.st_mtime_ns >= NEW_AFTER:
            os.utime(dirpath, ns=(when_ns, when_ns))


# -- running a scenario twice ------------------------------------------------------


Setup = Callable[[Path], None]
Action = Callable[[Any, Path], Any]


def _act(action: Action, who: str, root: Path, fsize: int | None) -> tuple[Any, ...]:
    os.umask(0o022)
    if fsize is not None:
        # Writes past fsize fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return outcome(lambda: action(MODULES[who], root), root)


def run_both(
    base: Path,
    setup: Setup,
    action: Action,
    *,
    user: int | None = None,
    fsize: int | None = None,
    before: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set up an area for each module under ``base``, run ``action(module, area)`` in a child.

    Returns the outcomes and the final states, keyed "shutil" and "cowpath";
    ``before``, if given, receives the states before the call.
    """
    outcomes: dict[str, Any] = {}
    states: dict[str, Any] = {}
    for who in MODULES:
        root = base / who
        root.mkdir()
        os.chmod(root, 0o755)
        setup(root)
        age(root)
        if before is not None:
            before[who] = snapshot(root)
        outcomes[who] = in_child(_act, action, who, root, fsize, user=user)
        states[who] = snapshot(root)
    return outcomes, states


def assert_same(base: Path, setup: Setup, action: Action, **kwargs: Any) -> tuple[Any, Any]:
    """:func:`run_both`, asserting that cowpath's outcome and state are shutil's."""
    outcomes, states = run_both(base, setup, action, **kwargs)
    assert outcomes["cowpath"] == outcomes["shutil"], report({}, outcomes)
    differing = diff(states["cowpath"], states["shutil"])
    assert differing == {}, report(differing, outcomes)
    return outcomes["cowpath"], states["cowpath"]


def diff(got: dict[bytes, Any], want: dict[bytes, Any]) -> dict[bytes, Any]:
    """Entries that differ, as (cowpath's, shutil's)."""
    return {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}


FIELDS = ("mode", "uid", "gid", "body", "xattrs", "mtime", "links")


def report(differing: dict[bytes, Any], outcomes: dict[str, Any]) -> str:
    """The outcomes and the differing entries, one field per line, long values cut.

    (pytest does not rewrite the asserts of this helper module.)
    """

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) < 160 else text[:157] + "..."

    lines = [f"cowpath: {short(outcomes.get('cowpath'))}", f"shutil:  {short(outcomes.get('shutil'))}"]
    for name, (ours, theirs) in differing.items():
        lines.append(f"{name!r}:")
        for i, label in enumerate(FIELDS):
            mine = None if ours is None else ours[i]
            other = None if theirs is None else theirs[i]
            mark = "  " if mine == other else "!="
            lines.append(f"  {mark} {label}: cowpath {short(mine)} | shutil {short(other)}")
    return "\n".join(lines)
