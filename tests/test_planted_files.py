"""Files planted by another user: a file made in a sticky, world-writable
directory (like /tmp) by someone else, at the name a copy is about to
create or replace. The secret must never reach a file its planter can read.

The other user is ``nobody``, in a forked child (``tests/faultutil.py``);
the filesystem is a tmpfs made for the test alone.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cowpath
from tests.faultutil import NOBODY, SmallFilesystems, in_child
from tests.parity import MODULES, outcome

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")


@pytest.fixture
def protected_regular() -> Iterator[None]:
    """fs.protected_regular=1 (the default of systemd-based distributions) for one test."""
    path = Path("/proc/sys/fs/protected_regular")
    try:
        old = path.read_text().strip()
        path.write_text("1")
    except OSError as exc:
        pytest.skip(f"cannot set fs.protected_regular here: {exc}")
    try:
        yield
    finally:
        path.write_text(old)


def _plant(path: Path) -> None:
    path.write_bytes(b"")
    os.chmod(path, 0o666)


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2"])
def test_file_planted_in_a_sticky_directory_is_refused_as_by_shutil(
    small: SmallFilesystems, protected_regular: None, function: str
) -> None:
    """Another user creates the file a copy is about to make in /tmp.

    With fs.protected_regular the kernel refuses an O_CREAT open of it, and
    shutil fails: the secret never reaches a file its attacker can read.
    cowpath must fail the same way, not open the file without O_CREAT.
    """
    shared = _sticky(small)
    secret = shared.parent / "secret"
    outcomes = []
    for who, module in MODULES:
        planted = shared / f"report-{who}"
        in_child(_plant, planted, user=NOBODY)
        outcomes.append(outcome(lambda m=module, p=planted: getattr(m, function)(secret, p), planted))
        assert planted.read_bytes() == b""
    assert outcomes[0] == outcomes[1]
    assert (outcomes[1].raised, outcomes[1].type, outcomes[1].errno) == (True, PermissionError, errno.EACCES)


def _sticky(small: SmallFilesystems) -> Path:
    """A world-writable sticky directory (like /tmp), with a 0600 secret beside it."""
    shared = small.make("tmpfs") / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    secret = shared.parent / "secret"
    secret.write_bytes(b"secret" * 100)
    os.chmod(secret, 0o600)
    return shared


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2"])
def test_atomic_copy_over_a_planted_file_keeps_the_copy_from_its_planter(
    small: SmallFilesystems, function: str
) -> None:
    """An atomic copy replaces the file another user planted in a sticky
    directory: the planter's file never receives the data, and the new file
    is not given to the planter either (an atomic replacement otherwise
    keeps the old file's owner, when the caller may give files away)."""
    shared = _sticky(small)
    secret = shared.parent / "secret"
    planted = shared / "report"
    in_child(_plant, planted, user=NOBODY)
    with open(planted, "rb") as theirs:
        getattr(cowpath, function)(secret, planted, atomic=True)
        assert theirs.read() == b""
    assert planted.read_bytes() == b"secret" * 100
    assert planted.stat().st_uid == os.getuid()
    # Outside a sticky directory the owner is kept, as documented.
    own = shared.parent / "owned"
    own.mkdir(mode=0o755)
    (own / "theirs").write_bytes(b"old")
    os.chown(own / "theirs", NOBODY, NOBODY)
    getattr(cowpath, function)(secret, own / "theirs", atomic=True)
    assert (own / "theirs").stat().st_uid == NOBODY
