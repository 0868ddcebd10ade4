"""I/O errors: a filesystem that fails under a copy or a tree copy, a data
block that fails its checksum, a disk whose blocks fail.

A filesystem that stops (XFS_IOC_GOINGDOWN / EXT4_IOC_SHUTDOWN, what XFS and
ext4 do themselves after a fatal metadata error) answers every later read,
write or open with EIO; btrfs answers EIO when a block fails its checksum.
Both are real kernel errors on a real filesystem, made without a
device-mapper target (see test_device_mapper_error_target).

Each test checks what the caller sees (EIO, naming the caller's files) and
what is left: the source untouched, no staging behind, no file under the
destination name, in a tree every copied file whole. shutil, meeting the
same error, is shown to leave a partial file.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import (
    MIB,
    SmallFilesystems,
    both_names,
    fingerprint,
    in_child,
    intact,
    leftovers,
    shut_down,
)
from tests.fsutil import extents
from tests.parity import Outcome, normalise, outcome, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")


def _eio_tree(root: Path) -> dict[str, bytes]:
    content = {}
    for d in range(6):
        for f in range(5):
            path = root / f"d{d}" / f"f{f}"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = os.urandom(20_000 + 1000 * f)
            path.write_bytes(data)
            content[f"d{d}/f{f}"] = data
    os.sync()
    return content


def _copytree_until_shutdown(module_name: str, src: Path, dst: Path, workers: int) -> Outcome:
    """copytree that stops the source's filesystem when the walk reaches its third directory."""
    walked = []

    def ignore(directory: Any, names: list[str]) -> list[str]:
        if os.path.basename(os.fspath(directory)).startswith("d"):  # not ext4's lost+found
            walked.append(directory)
            if len(walked) == 3:
                shut_down(src)
        return []

    if module_name == "shutil":
        return outcome(lambda: shutil.copytree(src, dst, ignore=ignore), dst.parent)
    return outcome(lambda: cowpath.copytree(src, dst, ignore=ignore, workers=workers), dst.parent)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_source_filesystem_fails_during_copytree(
    small: SmallFilesystems, tmpfs: Path, kind: str, workers: int
) -> None:
    """The source's filesystem stops partway: every later file fails with
    EIO and is listed; the files copied before are whole; nothing is left
    of cowpath's staging; the source, mounted again, is as it was."""
    outcomes: dict[str, Outcome] = {}
    failed_files = {}
    for who in ("shutil", "cowpath"):
        src = small.make(kind)
        content = _eio_tree(src)
        before = tree_state(src, mtimes=True)
        dst = tmpfs / who
        outcomes[who] = _copytree_until_shutdown(who, src, dst, workers)
        with small.offline(src):
            pass
        assert tree_state(src, mtimes=True) == before
        assert leftovers(tmpfs) == []
        errors = outcomes[who].errors or ()
        failed_files[who] = sorted(
            os.path.relpath(e.src, src) for e in errors if os.path.relpath(e.src, src) in content
        )
        if who == "cowpath":
            assert outcomes[who].type is shutil.Error
            copied = intact(dst, content)
            assert copied < len(content)
            listed = {e.dst.replace("ROOT0", str(tmpfs)) for e in errors}
            for relative in content:
                target = dst / relative
                assert target.exists() or {str(target), str(target.parent)} & listed, relative
            for e in errors:
                assert e.why.startswith("[Errno 5] Input/output error"), e.why
    assert (outcomes["cowpath"].raised, outcomes["cowpath"].type) == (
        outcomes["shutil"].raised,
        outcomes["shutil"].type,
    )
    if workers == 1:
        # One thread copies in shutil's order: as many files fail (ext4
        # lists each new filesystem's directories in its own hash order, so
        # not necessarily the same ones). Directories differ: shutil copies a
        # directory's metadata when its subtree is done, cowpath all of them
        # at the end, when those walked before the failure fail as well.
        assert len(failed_files["cowpath"]) == len(failed_files["shutil"])


def _fail_during(point: str, after: int, call: Any, src: Path, dst: Path) -> Outcome:
    """In a child: run ``call``, stopping the filesystem at ``point`` at the
    ``after``-th audited step from the first file opened that is not the
    source (1: as the destination or its staging file is created; 2: the
    step after, once the data is written)."""
    steps = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if steps or (event == "open" and os.fsdecode(args[0]) != str(src)):
            steps.append(event)
            if len(steps) == after:
                shut_down(Path(point))

    sys.addaudithook(hook)
    return outcome(lambda: call(src, dst), dst.parent)


@pytest.mark.parametrize(
    ("side", "after"),
    [("source", 1), ("destination", 1), ("destination", 2)],
    ids=["source", "create", "name"],
)
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_filesystem_fails_during_a_file_copy(
    small: SmallFilesystems, tmpfs: Path, side: str, after: int, kind: str, function: str
) -> None:
    """The source's filesystem stops once the copy has opened the source, or
    the destination's as the new file is made or once its data is written:
    EIO naming the caller's files (both, for a failed read); no file under
    the destination name, also after mounting again; the source untouched.
    shutil, when the source fails, leaves a file under the name."""
    results = {}
    for who in ("shutil", "cowpath"):
        failing = small.make(kind)
        if side == "source":
            src, dst = failing / "src", tmpfs / who
        else:
            src, dst = tmpfs / f"src-{who}", failing / "dst"
        src.write_bytes(os.urandom(2 * MIB))
        os.sync()
        source = fingerprint(src)
        module = cowpath if who == "cowpath" else shutil
        seen = in_child(_fail_during, str(failing), after, getattr(module, function), src, dst)
        with small.offline(failing):
            pass
        results[who] = (seen, os.path.lexists(dst))
        assert fingerprint(src) == source
        assert leftovers(dst.parent) == []
    seen, left = results["cowpath"]
    assert (seen.raised, seen.type, seen.errno) == (True, OSError, errno.EIO)
    named = tuple(normalise(str(name), dst.parent) for name in (src, dst))
    names = (seen.filename, seen.filename2)
    assert names in (named, (named[1], None)) if side == "destination" else names == named
    assert left is False, "a file under the destination name"
    if side == "source":
        by_shutil, left = results["shutil"]
        assert (by_shutil.raised, by_shutil.type, by_shutil.errno) == (True, OSError, errno.EIO)
        assert left is True


def _corrupt(small: SmallFilesystems, point: Path, data: bytes) -> None:
    """Flip a byte of ``data`` where it lies in the image of ``point``'s filesystem."""
    with small.offline(point) as image:
        raw = image.read_bytes()
        at = raw.find(data[:4096])
        assert at >= 0
        assert raw.find(data[:4096], at + 1) < 0
        with open(image, "r+b") as f:
            f.seek(at + 100)
            f.write(bytes([raw[at + 100] ^ 0xFF]))


@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_checksum_error_on_btrfs(small: SmallFilesystems, tmpfs: Path, function: str) -> None:
    """A data block that fails its checksum: btrfs answers EIO on reading it.

    A copy fails with EIO, naming both files, and leaves nothing (shutil
    leaves a partial file). A clone does not read the data: it succeeds and
    shares the damaged block, which reads as EIO in the clone too, as with
    ``cp --reflink``.
    """
    point = small.make("btrfs")
    data = os.urandom(4 * MIB)
    (point / "src").write_bytes(data)
    os.sync()
    _corrupt(small, point, data)
    src = point / "src"
    for dst, mode in ((tmpfs / "dst", "auto"), (point / "dst", "never")):
        with pytest.raises(OSError) as info:
            getattr(cowpath, function)(src, dst, reflink=mode)
        assert type(info.value) is OSError
        assert info.value.errno == errno.EIO
        both_names(info.value, src, dst)
        assert not os.path.lexists(dst)
    assert leftovers(point) == []
    assert leftovers(tmpfs) == []
    with pytest.raises(OSError) as by_shutil:
        getattr(shutil, function)(src, tmpfs / "by-shutil")
    assert by_shutil.value.errno == errno.EIO
    assert (tmpfs / "by-shutil").stat().st_size < len(data)
    report = cowpath.CopyReport()
    cowpath.copyfile(src, point / "clone", report=report)
    assert report.files_cloned == 1
    with pytest.raises(OSError) as reading:
        (point / "clone").read_bytes()
    assert reading.value.errno == errno.EIO


def _device_mapper_unavailable() -> str | None:
    """Why device-mapper cannot be used here, with the evidence; None if it can."""
    if shutil.which("dmsetup") is None:
        return "dmsetup is not installed (package dmsetup)"
    misc = Path("/proc/misc")
    if misc.exists() and "device-mapper" not in misc.read_text():
        evidence = [f"kernel {os.uname().release}: /proc/misc does not list device-mapper"]
        config = Path("/proc/config.gz")
        if config.exists():
            import gzip

            lines = gzip.decompress(config.read_bytes()).decode().splitlines()
            found = [
                line for line in lines if "CONFIG_BLK_DEV_DM" in line or line == "# CONFIG_MD is not set"
            ]
            evidence.append("its config: " + ("; ".join(found) or "no CONFIG_BLK_DEV_DM"))
        return ", ".join(evidence)
    done = subprocess.run(["dmsetup", "targets"], check=False, capture_output=True, text=True)
    if done.returncode:
        return f"dmsetup targets failed: {' '.join((done.stderr or done.stdout).split())}"
    if not any(line.split()[:1] == ["error"] for line in done.stdout.splitlines()):
        return f"the kernel has no dm error target ({' '.join(done.stdout.split())})"
    return None


def _dm(*args: str, table: str | None = None) -> None:
    done = subprocess.run(["dmsetup", *args], input=table, check=False, capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr)


def test_device_mapper_error_target(small: SmallFilesystems, tmpfs: Path) -> None:
    """A disk whose blocks under one file fail (dm "error" target over a loop
    device): reading the file gives EIO. The copy raises it with both names
    and leaves nothing; shutil leaves a partial file.

    Needs device-mapper, which containers and some kernels do not have:
    then the test is skipped and says why (and fails instead with
    COWPATH_REQUIRE_DM=1). The shutdown and checksum tests above cover EIO
    without it.
    """
    reason = _device_mapper_unavailable()
    if reason is not None:
        if os.environ.get("COWPATH_REQUIRE_DM") == "1":
            pytest.fail(f"COWPATH_REQUIRE_DM=1 but device-mapper is unavailable: {reason}", pytrace=False)
        pytest.skip(f"device-mapper is unavailable: {reason}")
    image = small.root / "dm.img"
    size = 64 * MIB
    with open(image, "wb") as f:
        f.truncate(size)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    name = f"cowpath-test-{os.getpid()}"
    mapped = Path("/dev/mapper") / name
    point = small.root / "dm"
    point.mkdir()
    sectors = size // 512
    mounted = created = False
    try:
        _dm("create", "--noudevsync", name, table=f"0 {sectors} linear {device} 0\n")
        created = True
        _dm("mknodes", name)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(mapped)], check=True, capture_output=True)
        subprocess.run(["mount", str(mapped), str(point)], check=True, capture_output=True)
        mounted = True
        src = point / "src"
        data = os.urandom(4 * MIB)
        src.write_bytes(data)
        os.sync()
        first = extents(src)[0]
        start, count = first.physical // 512, max(first.length // 512, 8)
        table = (
            f"0 {start} linear {device} 0\n"
            f"{start} {count} error\n"
            f"{start + count} {sectors - start - count} linear {device} {start + count}\n"
        )
        _dm("reload", "--noudevsync", name, table=table)
        _dm("resume", "--noudevsync", name)
        fd = os.open(src, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read from the disk, not the cache
        os.close(fd)
        for function in ("copyfile", "copy2"):
            dst = tmpfs / function
            with pytest.raises(OSError) as info:
                getattr(cowpath, function)(src, dst)
            assert info.value.errno == errno.EIO
            both_names(info.value, src, dst)
            assert not os.path.lexists(dst)
        assert leftovers(tmpfs) == []
        with pytest.raises(OSError) as by_shutil:
            shutil.copyfile(src, tmpfs / "by-shutil")
        assert by_shutil.value.errno == errno.EIO
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        if created:
            subprocess.run(["dmsetup", "remove", "--noudevsync", name], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
