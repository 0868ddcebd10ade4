"""cowpath's temporary names: how a new file or tree is staged before it
takes its name, and what is left when that fails.

A private staging name carries 64 random bits and is created exclusively,
never through a symlink; symlinks planted at the names cowpath will try are
never followed; and an error (or Ctrl-C) at any step of a copy leaves no
staging file or directory behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import in_child, leftovers, walk_files
from tests.fsutil import force_named_staging

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")

STAGING_FILE = re.compile(r"\A\.(?P<name>.*)\.(?P<token>[0-9a-f]{16})\.cowpath\Z", re.DOTALL)


def _staging_opens(root: Path, count: int, atomic: bool) -> list[tuple[str, int, int]]:
    """In a child, with named staging: copy ``count`` times; return every
    open of a staging name (name, mode, flags) the audit hook saw."""
    force_named_staging()
    seen: list[tuple[str, int, int]] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].endswith(".cowpath"):
            seen.append((os.path.basename(args[0]), args[1], args[2]))

    sys.addaudithook(hook)
    for i in range(count):
        cowpath.copy2(root / "src", root / ("dst" if atomic else f"dst{i}"), atomic=atomic)
    return seen


@pytest.mark.parametrize("atomic", [False, True])
def test_staging_names_are_unpredictable_and_exclusive(tmp_path: Path, atomic: bool) -> None:
    """A private staging name carries 64 random bits, and is created with
    O_CREAT | O_EXCL | O_NOFOLLOW: never opened if it exists, never through
    a symlink. (Its mode, 0600, is what the permission-window tests watch.)"""
    (tmp_path / "src").write_bytes(b"data")
    if atomic:
        (tmp_path / "dst").write_bytes(b"old")
    seen = in_child(_staging_opens, tmp_path, 64, atomic)
    assert len(seen) == 64
    tokens = set()
    for name, _, flags in seen:
        match = STAGING_FILE.match(name)
        assert match is not None, name
        assert match["name"] == ("dst" if atomic else match["name"])
        tokens.add(match["token"])
        wanted = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        assert flags & wanted == wanted
    assert len(tokens) == 64
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("atomic", [False, True])
def test_planted_symlinks_at_staging_names_are_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, staging: str, atomic: bool
) -> None:
    """With the random part made predictable, symlinks are planted at the
    first names cowpath will try, pointing at a victim file and at a path
    that does not exist yet: the copy goes on under the next name, the
    victim is untouched and nothing is created through the links. With
    every name taken, a new file is written directly, and an atomic copy
    fails rather than write in place."""
    tokens = [f"{i:016x}" for i in range(100)]
    monkeypatch.setattr(cowpath._staging, "token", lambda: tokens.pop(0))
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    (tmp_path / "src").write_bytes(b"new data")
    dst = tmp_path / "dst"
    if atomic:
        dst.write_bytes(b"old")
    for i in range(4):
        planted = tmp_path / f".dst.{i:016x}.cowpath"
        planted.symlink_to(victim if i % 2 else tmp_path / "created-through-link")
    cowpath.copy2(tmp_path / "src", dst, atomic=atomic)
    assert dst.read_bytes() == b"new data"
    assert victim.read_bytes() == b"victim"
    assert not (tmp_path / "created-through-link").exists()
    assert all((tmp_path / f".dst.{i:016x}.cowpath").is_symlink() for i in range(4))
    # Every name the copy may try is taken.
    tokens[:] = [f"{i:016x}" for i in range(100)]
    for i in range(4, 16):
        (tmp_path / f".dst.{i:016x}.cowpath").symlink_to(victim)
    if atomic:
        with pytest.raises(FileExistsError):
            cowpath.copy2(tmp_path / "src", dst, atomic=True)
        assert dst.read_bytes() == b"new data"
    else:
        dst.unlink()
        cowpath.copy2(tmp_path / "src", dst)
        assert dst.read_bytes() == b"new data"
    assert victim.read_bytes() == b"victim"


# Removing a file or directory is taken to succeed: cleanup itself is not
# failed on purpose (a failed unlink after a successful link or rename
# would leave a second name, and there is nothing left to do about it).
CLEANUP_EVENTS = frozenset({"os.remove", "os.rmdir", "shutil.rmtree"})


def _fail_at(step: int, error: str, call: Callable[[], Any], named: bool) -> tuple[bool, Any]:
    """In a child: run ``call``, raising ``error`` from its ``step``-th audited
    step (before that step's system call). Returns whether the step was
    reached, and the outcome."""
    if named:
        force_named_staging()
    count = [0]
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event not in CLEANUP_EVENTS:
            count[0] += 1
            if count[0] == step:
                if error == "interrupt":
                    raise KeyboardInterrupt
                raise OSError(errno.EIO, "injected")

    sys.addaudithook(hook)
    try:
        call()
    except (OSError, KeyboardInterrupt) as exc:
        return True, type(exc).__name__
    finally:
        active[0] = False
    return count[0] >= step, "returned"


@pytest.mark.parametrize("error", ["oserror", "interrupt"])
@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
@pytest.mark.parametrize("case", ["copy2-new", "copy2-atomic", "copytree"])
def test_staging_removed_on_every_error_path(tmp_path: Path, case: str, named: bool, error: str) -> None:
    """An error (or Ctrl-C) at each step of a copy in turn, until the copy
    gets through: every time, no staging file or directory remains, a new
    destination is absent or whole, and an atomically replaced one is the
    old or the new file, whole."""
    (tmp_path / "src").write_bytes(b"new data" * 1000)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (tmp_path / "tree" / name).write_bytes(name.encode() * 1000)
    calls = {
        "copy2-new": lambda: cowpath.copy2(tmp_path / "src", tmp_path / "dst"),
        "copy2-atomic": lambda: cowpath.copy2(tmp_path / "src", tmp_path / "dst", atomic=True),
        "copytree": lambda: cowpath.copytree(tmp_path / "tree", tmp_path / "dst", workers=1),
    }
    step = 0
    while True:
        step += 1
        if case == "copy2-atomic":
            (tmp_path / "dst").write_bytes(b"old")
        reached, outcome = in_child(_fail_at, step, error, calls[case], named)
        assert leftovers(tmp_path) == [], (step, outcome)
        dst = tmp_path / "dst"
        if case == "copytree":
            for path in walk_files(dst):
                assert path.read_bytes() == (tmp_path / "tree" / path.relative_to(dst)).read_bytes()
        elif os.path.lexists(dst):
            assert dst.read_bytes() in (b"old", b"new data" * 1000), (step, outcome)
        if case != "copy2-atomic" and os.path.lexists(dst):
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        if not reached:
            break
    assert step > 5
