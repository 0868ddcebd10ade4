"""``cowpath dedupe`` and ``cowpath du`` on real filesystems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cowpath
from cowpath._cli import main
from cowpath._deduperead import WHOLE_SAMPLE
from cowpath._dedupetree import CHANGED, dedupe_paths
from cowpath._pool import TreeProgress
from tests.dedupeutil import MIB, SIZES, pattern, record_tree, sparse, write
from tests.faultutil import NOBODY, in_child


def _tree(root: Path) -> Path:
    """Groups of identical files of every size class, and everything that must be left alone."""
    tree = root / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    for size in SIZES:
        data = pattern(size, seed=size)
        write(tree / f"s{size}-a", data)
        write(tree / "sub" / f"s{size}-b", data)
        write(tree / "sub" / "deeper" / f"s{size}-c", data)
    big = pattern(4 * MIB, seed=9)
    for where, at in (("first", 0), ("middle", 2 * MIB), ("last", 4 * MIB - 1)):
        near = bytearray(big)
        near[at] ^= 1
        write(tree / f"near-{where}", bytes(near))
    write(tree / "near-original", big)
    sparse(tree / "sparse-a")
    sparse(tree / "sub" / "sparse-b")
    write(tree / "empty-a", b"")
    write(tree / "empty-b", b"")
    os.link(tree / "s4096-a", tree / "hardlink-of-s4096-a")
    os.symlink("s4097-a", tree / "symlink")
    os.setxattr(tree / "sub" / "s4097-b", "user.kept", b"1")
    os.chmod(tree / "sub" / "deeper" / "s4097-c", 0o4711)
    os.chown(tree / "sub" / "s4096-b", NOBODY, NOBODY)
    cowpath.copyfile(tree / "s4095-a", tree / "clone-of-s4095-a")  # a clone where the filesystem can
    return tree


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _summed(capsys: pytest.CaptureFixture[str], path: Path) -> list[int]:
    status, out, _ = _run(capsys, "du", "-s", "--bytes", str(path))
    assert status == 0
    return [int(x) for x in out.splitlines()[1].split()[:3]]


def test_dedupe_shares_every_group_and_changes_nothing_else(
    cloning_fs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = _tree(cloning_fs)
    before = record_tree(tree)
    total, exclusive, _ = _summed(capsys, tree)
    status, out, err = _run(capsys, "dedupe", "-r", "--json", str(tree))
    assert (status, err) == (0, "")
    result = json.loads(out)
    assert record_tree(tree) == before
    btrfs = cloning_fs.parent.name == "mnt-btrfs"
    shared = sorted((g["size"], len(g["duplicates"])) for g in result["groups"])
    expected = [(size, 2) for size in SIZES if not (btrfs and size <= 2048)]
    assert shared == sorted([*expected, (3 * MIB, 1)])
    # The clone of s4095-a already shares all of it; the hard link is the same file.
    assert result["files_already_shared"] == 1
    assert result["files_examined"] == len([p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()])
    assert result["bytes_reclaimed"] > 0
    for near in ("first", "middle", "last"):
        assert cowpath.shared_bytes(tree / "near-original", tree / f"near-{near}") == 0
    after_total, after_exclusive, set_shared = _summed(capsys, tree)
    assert after_total == total
    assert after_exclusive < exclusive
    assert after_exclusive + set_shared < total
    # A second run finds everything shared already.
    status, out, _ = _run(capsys, "dedupe", "-r", "--json", str(tree))
    assert status == 0
    assert json.loads(out)["files_deduped"] == 0


def test_dry_run_says_what_it_would_do_and_changes_nothing(
    xfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = _tree(xfs)
    before = record_tree(tree)
    status, out, _ = _run(capsys, "dedupe", "-r", "--dry-run", str(tree))
    assert status == 0
    assert f"would dedupe '{tree / 'sub' / 's4097-b'}' onto '{tree / 's4097-a'}'" in out
    assert "near-" not in out
    assert record_tree(tree) == before
    assert cowpath.shared_bytes(tree / "s4097-a", tree / "sub" / "s4097-b") == 0


def test_without_r_only_the_files_named_or_directly_inside(
    xfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = _tree(xfs)
    status, out, _ = _run(capsys, "dedupe", "--json", str(tree), str(tree / "sub" / "s4097-b"))
    assert status == 0
    groups = json.loads(out)["groups"]
    assert [(Path(g["source"]).name, [Path(d).name for d in g["duplicates"]]) for g in groups] == [
        ("s4097-a", ["s4097-b"])
    ]


def test_min_size_skips_smaller_files(xfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = _tree(xfs)
    status, out, _ = _run(capsys, "dedupe", "-r", "--json", "--min-size", "1M", str(tree))
    assert status == 0
    assert {g["size"] for g in json.loads(out)["groups"]} == {16 * MIB + 7, 3 * MIB}


def test_ext4_reports_each_file_on_one_line_and_exits_1(
    ext4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = _tree(ext4)
    before = record_tree(tree)
    status, out, err = _run(capsys, "dedupe", "-r", str(tree))
    assert status == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines
    assert all(line.startswith("cowpath: cannot dedupe '") and "cannot share" in line for line in lines)
    assert "0 files now share" in out
    assert record_tree(tree) == before


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["dedupe", "--min-size", "lots", "."])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as missing:
        main(["dedupe"])
    assert missing.value.code == 2


def test_missing_paths_are_reported_and_exit_1(xfs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "dedupe", str(xfs / "nope"))
    assert status == 1
    assert err == f"cowpath: cannot dedupe '{xfs / 'nope'}': No such file or directory\n"


def _as_nobody_cli(tree: Path) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["dedupe", "-r", str(tree)])
    return status, err.getvalue()


def test_unreadable_files_are_reported_and_skipped(small: Any) -> None:
    point = small.make("xfs")
    tree = point / "tree"
    tree.mkdir()
    data = pattern(MIB)
    for name in ("a", "b", "locked"):
        write(tree / name, data)
    for name in ("a", "b"):
        os.chown(tree / name, NOBODY, NOBODY)
    os.chmod(tree / "locked", 0o600)
    status, err = in_child(_as_nobody_cli, tree, user=NOBODY)
    assert status == 1
    assert err == f"cowpath: cannot dedupe '{tree / 'locked'}': Permission denied\n"
    assert cowpath.shared_bytes(tree / "a", tree / "b") == MIB


def test_a_file_changed_during_the_run_is_reported_and_keeps_what_was_written(cloning_fs: Path) -> None:
    big, small_data = pattern(4 * MIB, 1), pattern(MIB, 2)
    for name in ("big-a", "big-b"):
        write(cloning_fs / name, big)
    for name in ("small-a", "small-b"):
        write(cloning_fs / name, small_data)
    changed = bytearray(small_data)
    changed[100] ^= 1

    def meanwhile(progress: TreeProgress) -> None:
        if progress.files_done == 2:  # the big group is done; the small one comes next
            with open(cloning_fs / "small-b", "r+b") as f:
                f.write(bytes(changed))

    summary = dedupe_paths([cloning_fs], progress=meanwhile)
    assert summary.failures == [(str(cloning_fs / "small-b"), CHANGED)]
    assert (cloning_fs / "small-b").read_bytes() == bytes(changed)
    assert cowpath.shared_bytes(cloning_fs / "big-a", cloning_fs / "big-b") == 4 * MIB


def test_the_partial_check_opened_ahead_leaves_no_descriptor_open(cloning_fs: Path) -> None:
    # More files over WHOLE_SAMPLE than the partial check opens ahead of itself.
    size = WHOLE_SAMPLE + 4096
    for group in range(24):
        data = pattern(size, seed=group + 10)
        for member in range(3):
            write(cloning_fs / f"g{group}-{member}", data)
    fds = sorted(os.listdir("/proc/self/fd"))
    summary = dedupe_paths([str(cloning_fs)])
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert summary.failures == []
    assert len(summary.groups) == 24
    for group in range(24):
        assert cowpath.shared_bytes(cloning_fs / f"g{group}-0", cloning_fs / f"g{group}-2") == size


def test_du_counts_each_shared_extent_once(cloning_fs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(cloning_fs / "a", pattern(MIB))
    for name in ("c1", "c2"):
        cowpath.reflink(a, cloning_fs / name)
    write(cloning_fs / "own", pattern(MIB, 8))
    os.link(cloning_fs / "own", cloning_fs / "own-link")
    assert _summed(capsys, cloning_fs) == [4 * MIB, MIB, MIB]
    status, out, _ = _run(capsys, "du", "--bytes", str(cloning_fs))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Total", "Exclusive", "Set", "shared", "Filename"]
    assert f"{MIB:>10}  {MIB:>10}  {'-':>10}  {cloning_fs / 'own'}" in lines
    assert len(lines) == 6


def test_the_command_runs_as_a_program(xfs: Path) -> None:
    write(xfs / "a", b"x" * 5000)
    write(xfs / "b", b"x" * 5000)
    done = subprocess.run(
        [sys.executable, "-m", "cowpath", "dedupe", str(xfs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr
    assert "2 files examined, 1 group of identical files" in done.stdout


@pytest.mark.parametrize("outside", ["source", "duplicate"])
def test_files_sharing_with_a_file_outside_the_run_are_still_deduped(
    cloning_fs: Path, capsys: pytest.CaptureFixture[str], outside: str
) -> None:
    """A block shared with some other file is no proof of sharing with the group's source."""
    tree = cloning_fs / "tree"
    tree.mkdir()
    data = pattern(2 * MIB + 5, seed=11)
    write(tree / "a", data)
    write(tree / "b", data)
    cowpath.reflink(tree / ("a" if outside == "source" else "b"), cloning_fs / "elsewhere")
    before = record_tree(tree)
    status, out, _ = _run(capsys, "dedupe", "-r", "--json", str(tree))
    assert status == 0
    result = json.loads(out)
    assert (result["files_deduped"], result["files_already_shared"]) == (1, 0)
    assert result["bytes_deduped"] == len(data)
    assert cowpath.shared_bytes(tree / "a", tree / "b") == len(data)
    assert record_tree(tree) == before
    assert (cloning_fs / "elsewhere").read_bytes() == data


def test_a_clone_of_the_source_is_counted_as_already_shared(
    cloning_fs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(cloning_fs / "a", pattern(MIB + 3, seed=12))
    cowpath.reflink(cloning_fs / "a", cloning_fs / "b")
    write(cloning_fs / "c", pattern(MIB + 3, seed=12))
    status, out, _ = _run(capsys, "dedupe", "--json", str(cloning_fs))
    assert status == 0
    result = json.loads(out)
    assert (result["files_deduped"], result["files_already_shared"]) == (1, 1)
    assert cowpath.shared_bytes(cloning_fs / "a", cloning_fs / "c") == MIB + 3


@pytest.mark.parametrize("size", [64 * 1024 + 3, WHOLE_SAMPLE - 1, WHOLE_SAMPLE, WHOLE_SAMPLE + 1])
def test_files_read_whole_for_the_partial_check_share_only_when_identical(
    cloning_fs: Path, capsys: pytest.CaptureFixture[str], size: int
) -> None:
    """Small files are read whole before their partial check; a byte it does not look at still counts."""
    data = pattern(size, seed=size)
    write(cloning_fs / "a", data)
    write(cloning_fs / "b", data)
    for name, at in (("near-unsampled", size // 3), ("near-last", size - 1)):
        near = bytearray(data)
        near[at] ^= 1  # size // 3 is not in the first, middle or last block
        write(cloning_fs / name, bytes(near))
    before = record_tree(cloning_fs)
    status, out, _ = _run(capsys, "dedupe", "--json", str(cloning_fs))
    assert status == 0
    groups = json.loads(out)["groups"]
    assert [(Path(g["source"]).name, [Path(d).name for d in g["duplicates"]]) for g in groups] == [
        ("a", ["b"])
    ]
    assert record_tree(cloning_fs) == before
    assert cowpath.shared_bytes(cloning_fs / "a", cloning_fs / "b") == size
    for name in ("near-unsampled", "near-last"):
        assert cowpath.shared_bytes(cloning_fs / "a", cloning_fs / name) == 0
        assert cowpath.shared_bytes(cloning_fs / "b", cloning_fs / name) == 0
