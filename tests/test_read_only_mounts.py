"""A read-only filesystem: a destination on a read-only mount (remounted, or
a read-only bind mount) fails with EROFS as in shutil and changes nothing;
an atomic replacement or a required clone there is EROFS too, never
"cannot clone"; a read-only source mount still clones.

The filesystems are small images made for one test (the ``small`` fixture).
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

import cowpath
from tests.faultutil import MIB, SmallFilesystems, caller_names, fingerprint, leftovers
from tests.fsutil import shared_bytes
from tests.parity import MODULES, outcome, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")


READ_ONLY_CALLS = {
    "copyfile-new": lambda m, ro, src: m.copyfile(src, ro / "new"),
    "copy-new": lambda m, ro, src: m.copy(src, ro / "new"),
    "copy2-new": lambda m, ro, src: m.copy2(src, ro / "new"),
    "copyfile-existing": lambda m, ro, src: m.copyfile(src, ro / "existing"),
    "copy2-existing": lambda m, ro, src: m.copy2(src, ro / "existing"),
    "copytree-new": lambda m, ro, src: m.copytree(ro / "tree", ro / "tree-copy"),
    "copytree-into-existing": lambda m, ro, src: m.copytree(
        src.parent / "tree", ro / "tree", dirs_exist_ok=True
    ),
}


def _read_only_area(root: Path) -> Path:
    root.mkdir()
    (root / "existing").write_bytes(b"old data")
    for i in range(3):
        (root / "tree" / f"d{i}").mkdir(parents=True)
        (root / "tree" / f"d{i}" / "f").write_bytes(b"tree data %d" % i)
    return root


@pytest.mark.parametrize("case", list(READ_ONLY_CALLS))
@pytest.mark.parametrize("how", ["remount", "bind"])
def test_read_only_destination_as_shutil(small: SmallFilesystems, tmpfs: Path, case: str, how: str) -> None:
    """EROFS, as shutil raises it (type, errno, names, message), nothing changed."""
    point = small.make("xfs")
    for who in ("shutil", "cowpath"):
        _read_only_area(point / who)
    if how == "remount":
        small.remount(point, "ro")
        view = point
    else:
        view = small.bind(point, read_only=True)
    src = tmpfs / "src"
    src.write_bytes(b"new data" * 1000)
    (tmpfs / "tree" / "d0").mkdir(parents=True)
    (tmpfs / "tree" / "d0" / "f").write_bytes(b"other tree data")
    before = tree_state(point, mtimes=True)
    outcomes = {}
    for who, module in MODULES:
        outcomes[who] = outcome(lambda m=module, w=who: READ_ONLY_CALLS[case](m, view / w, src), view / who)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert outcomes["cowpath"].raised
    assert "Read-only file system" in outcomes["cowpath"].message
    assert tree_state(point, mtimes=True) == before


@pytest.mark.parametrize("reflink", ["auto", "always"])
def test_read_only_destination_atomic_and_clone(small: SmallFilesystems, reflink: str) -> None:
    """An atomic replacement and a required clone on a read-only mount fail
    with EROFS (not "cannot clone"), naming both files, and change nothing."""
    point = small.make("xfs")
    src = point / "src"
    src.write_bytes(os.urandom(MIB))
    (point / "existing").write_bytes(b"old")
    small.remount(point, "ro")
    for dst, atomic in ((point / "existing", True), (point / "new", False), (point / "existing", False)):
        with pytest.raises(OSError) as info:
            cowpath.copyfile(src, dst, reflink=reflink, atomic=atomic)  # type: ignore[arg-type]
        assert type(info.value) is OSError
        assert info.value.errno == errno.EROFS
        caller_names(info.value, src, dst)
    assert (point / "existing").read_bytes() == b"old"
    assert not (point / "new").exists()


def test_read_only_source_mount(small: SmallFilesystems) -> None:
    """Copying from a read-only view (bind mount) of the same XFS clones:
    the kernel allows a clone between two mounts of one filesystem, and
    a read-only source is all a clone needs. The source is untouched."""
    point = small.make("xfs")
    (point / "data").mkdir()
    data = os.urandom(3 * MIB)
    (point / "data" / "src").write_bytes(data)
    source = fingerprint(point / "data" / "src")
    view = small.bind(point / "data", read_only=True)
    report = cowpath.CopyReport()
    cowpath.copy2(view / "src", point / "dst", report=report)
    cowpath.reflink(view / "src", point / "dst2", report=report)
    assert (point / "dst").read_bytes() == data
    assert (point / "dst2").read_bytes() == data
    assert (report.files_cloned, report.files_copied) == (2, 0)
    assert shared_bytes(point / "dst") == len(data)
    assert fingerprint(point / "data" / "src") == source
    assert leftovers(point) == []
