"""What the dedupe tests record about files, and files to record: identical, near, sparse."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
#: The size classes every dedupe test covers.
SIZES = [1, 4095, 4096, 4097, 16 * MIB + 7]


def pattern(size: int, seed: int = 3) -> bytes:
    """``size`` bytes that differ block by block (no block is all zeros or repeated)."""
    block = hashlib.blake2b(str(seed).encode(), digest_size=64).digest() * 64  # 4 KiB
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.blake2b(i.to_bytes(8, "little"), key=block[:64]).digest() * 64
        i += 1
    return bytes(out[:size])


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` with plain writes (never a clone: ``cp`` clones on XFS and btrfs)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def sparse(path: Path, seed: int = 5) -> Path:
    """A 3 MiB file: 1 MiB data, a 1 MiB hole, 1 MiB data."""
    with open(path, "wb") as f:
        f.write(pattern(MIB, seed))
        f.seek(2 * MIB)
        f.write(pattern(MIB, seed + 1))
        f.flush()
        os.fsync(f.fileno())
    return path


def record(path: Path) -> dict[str, Any]:
    """Everything dedupe must leave as it was: content, inode, size, mode, owner, times, xattrs, links."""
    # Read first: the reading may set the access time (relatime), and the
    # record must be of the file as it stays.
    digest = None if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    st = os.lstat(path)
    facts: dict[str, Any] = {
        name: getattr(st, name)
        for name in (
            "st_ino",
            "st_dev",
            "st_size",
            "st_mode",
            "st_uid",
            "st_gid",
            "st_nlink",
            "st_mtime_ns",
            "st_ctime_ns",
            "st_atime_ns",
        )
    }
    if stat.S_ISLNK(st.st_mode):
        facts["target"] = os.readlink(path)
        return facts
    facts["sha"] = digest
    facts["xattrs"] = {name: os.getxattr(path, name) for name in sorted(os.listxattr(path))}
    return facts


def record_tree(root: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(root)): record(p) for p in sorted(root.rglob("*")) if not p.is_dir()}


def assert_refused(a: Path, b: Path, code: int) -> None:
    """``dedupe(a, b)`` raises ReflinkNotSupportedError(code) naming both files, and changes neither."""
    import pytest

    import cowpath

    before = record(a), record(b)
    with pytest.raises(cowpath.ReflinkNotSupportedError) as caught:
        cowpath.dedupe(a, b)
    assert caught.value.errno == code
    assert (caught.value.filename, caught.value.filename2) == (str(a), str(b))
    assert (record(a), record(b)) == before
