"""The harness for "as shutil does it": the same call through shutil and through
cowpath, on two equal fresh areas, compared by what a caller can observe.

A caller observes what the call returned or raised (:func:`outcome`) and
what the filesystem holds afterwards (:func:`tree_state`). The two areas
differ only in their roots, so every path in an outcome is normalised: the
first root given becomes ``ROOT0``, the second ``ROOT1``, and so on
(:func:`normalise`). :func:`run_both` does all of it for the usual test::

    def setup(root: Path) -> None:
        (root / "src").write_bytes(b"data")

    run_both(any_fs, setup, lambda module, root: module.copy2(root / "src", root / "dst"))

Tests that need another arrangement (the two calls on different
filesystems, a state taken only of part of an area) call :func:`outcome`
and :func:`tree_state` themselves.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import cowpath
from tests.faultutil import in_child, leftovers

StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

# shutil first: where the two differ, the message shows shutil's outcome first.
MODULES: tuple[tuple[str, ModuleType], ...] = (("shutil", shutil), ("cowpath", cowpath))


# -- normalising -------------------------------------------------------------------


def normalise(value: Any, *roots: StrPath) -> Any:
    """``value`` with each root's text replaced by ``ROOT0``, ``ROOT1``, ...

    str and bytes are rewritten; a path object becomes ``(its type, its
    rewritten text)``, so that a ``Path`` and a ``str`` naming the same file
    still compare unequal. Anything else is returned as it is. A root
    inside another is replaced first, so each keeps its own label.
    """
    if isinstance(value, os.PathLike):
        return type(value), _text(os.fspath(value), roots)
    if isinstance(value, (str, bytes)):
        return _text(value, roots)
    return value


def _text(value: str | bytes, roots: Sequence[StrPath]) -> str | bytes:
    longest_first = sorted(enumerate(roots), key=lambda item: -len(os.fsencode(item[1])))
    for i, root in longest_first:
        if isinstance(value, bytes):
            value = value.replace(os.fsencode(root), b"ROOT%d" % i)
        else:
            value = value.replace(os.fsdecode(root), f"ROOT{i}")
    return value


def _plain(value: Any, roots: Sequence[StrPath]) -> Any:
    """A path's normalised text, whatever type held it (a DirEntry, a Path, str or bytes)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _text(value, roots) if isinstance(value, (str, bytes)) else value


# -- what a call returned or raised --------------------------------------------------


class Failure(NamedTuple):
    """One entry of a ``shutil.Error``'s list, normalised.

    ``source_type`` is the name of the source's type: shutil lists a
    directory below the top by its ``DirEntry``, everything else by its
    path (``str`` or ``bytes``). The three paths are plain text.
    """

    source_type: str
    src: Any
    dst: Any
    why: Any


@dataclass(frozen=True)
class Outcome:
    """What a caller observes of one call, with the areas' roots normalised.

    ``type`` is the type of the value returned or of the exception raised.
    A return keeps its normalised ``value``; an exception its ``errno``,
    ``message`` (``str()`` of it), ``filename`` and ``filename2``, and for a
    ``shutil.Error`` that carries a list, ``errors``: that list, entry by
    entry. Two outcomes are the same when every field is.
    """

    raised: bool
    type: type
    value: Any = None
    errno: int | None = None
    message: str | None = None
    filename: Any = None
    filename2: Any = None
    errors: tuple[Failure, ...] | None = None


def outcome(call: Callable[[], Any], *roots: StrPath) -> Outcome:
    """Run ``call``; its result or the exception it raised, normalised for ``roots``."""
    try:
        result = call()
    except Exception as exc:
        errors = None
        if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
            errors = tuple(
                Failure(type(s).__name__, _plain(s, roots), _plain(d, roots), _plain(why, roots))
                for s, d, why in exc.args[0]
            )
        return Outcome(
            raised=True,
            type=type(exc),
            errno=getattr(exc, "errno", None),
            message=_text(str(exc), roots),
            filename=normalise(getattr(exc, "filename", None), *roots),
            filename2=normalise(getattr(exc, "filename2", None), *roots),
            errors=errors,
        )
    return Outcome(raised=False, type=type(result), value=normalise(result, *roots))


# -- what the filesystem holds -------------------------------------------------------


def tree_state(
    root: StrPath, *, mtimes: bool = False, roots: Sequence[StrPath] = ()
) -> dict[str, tuple[object, ...]]:
    """Everything a user can observe of the tree under ``root``, keyed by relative path.

    For every entry its kind, mode, owner, group and extended attributes;
    a symlink's text (with ``roots`` normalised, as an absolute link into
    an area names that area); a file's content, its link count and the
    other names in the tree that are hard links to it; a device's number.
    With ``mtimes``, modification times too (never access times: reading a
    file changes them).
    """
    root = os.fsdecode(root)
    found: dict[str, tuple[os.stat_result, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = (os.lstat(path), path)
    names_of: dict[tuple[int, int], list[str]] = {}
    for rel, (st, _) in found.items():
        names_of.setdefault((st.st_dev, st.st_ino), []).append(rel)
    seen: dict[str, tuple[object, ...]] = {}
    for rel, (st, path) in sorted(found.items()):
        owner = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, _xattrs(path))
        when = (st.st_mtime_ns,) if mtimes else ()
        if stat.S_ISLNK(st.st_mode):
            seen[rel] = ("link", _text(os.readlink(path), roots), *owner, *when)
        elif stat.S_ISDIR(st.st_mode):
            seen[rel] = ("dir", *owner, *when)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                content = f.read()
            others = tuple(sorted(n for n in names_of[st.st_dev, st.st_ino] if n != rel))
            seen[rel] = ("file", *owner, content, st.st_nlink, others, *when)
        else:
            seen[rel] = ("other", stat.S_IFMT(st.st_mode), st.st_rdev, *owner, *when)
    return seen


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):  # a filesystem or kind without them
            return ()
        raise


# -- both at once ----------------------------------------------------------------------


def run_both(
    base: Path | Sequence[Path],
    setup: Callable[..., object],
    call: Callable[..., Any],
    *,
    mtimes: bool = False,
    user: int | None = None,
    timeout: float | None = None,
    compared: Sequence[int] | None = None,
) -> Outcome:
    """Run ``call`` with shutil and with cowpath on two equal fresh areas; compare.

    For each module, in turn, an area is made under every base (the
    directories ``BASE/shutil`` and ``BASE/cowpath``): one base, or one for
    the source and one for the destination, perhaps on two filesystems
    (they may be the same directory). ``setup(*areas)`` fills the areas,
    then ``call(module, *areas)`` runs: in a forked child if ``user`` (it
    then runs as that user) or ``timeout`` is given, so that a copy that
    would hang, or one that needs another user's permissions, cannot
    disturb the test run.

    ``compared`` limits the state comparison to the areas of those bases.

    Asserted: the two outcomes are the same, every area holds the same
    (:func:`tree_state`, with ``mtimes`` if asked) and cowpath left none of
    its staging behind. Returns cowpath's outcome for the test's own checks.
    """
    bases = [base] if isinstance(base, Path) else list(base)
    outcomes: dict[str, Outcome] = {}
    states: dict[str, list[dict[str, tuple[object, ...]]]] = {}
    for who, module in MODULES:
        areas = [b / who for b in bases]
        for area in areas:
            area.mkdir(exist_ok=True)
        setup(*areas)
        if user is None and timeout is None:
            outcomes[who] = outcome(lambda m=module, a=areas: call(m, *a), *areas)
        else:
            outcomes[who] = in_child(
                outcome, lambda m=module, a=areas: call(m, *a), *areas, user=user, timeout=timeout or 60
            )
        unique = list(dict.fromkeys(areas))
        kept = unique if compared is None else [areas[i] for i in compared]
        states[who] = [tree_state(area, mtimes=mtimes, roots=areas) for area in kept]
        if module is cowpath:
            for area in unique:
                assert leftovers(area) == []
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    return outcomes["cowpath"]
