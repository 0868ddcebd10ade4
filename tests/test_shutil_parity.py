"""The same scenario through shutil and through cowpath gives the same outcome.

Each scenario runs twice, in two sibling areas of the same filesystem (or
pair of filesystems): once with shutil's function, once with cowpath's.
Content, mode, times, return values, exception types, messages and file
names must match, for str, bytes, Path and CowPath arguments.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.faultutil import NOBODY
from tests.parity import run_both

PATH_TYPES: dict[str, Callable[[Path], Any]] = {
    "str": str,
    "bytes": lambda p: os.fsencode(str(p)),
    "Path": Path,
    "CowPath": cowpath.CowPath,
}
FUNCTIONS = ["copyfile", "copy", "copy2"]


def _data(size: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def _src_only(root: Path) -> None:
    (root / "src").write_bytes(_data(70_000))
    os.chmod(root / "src", 0o754)


Scenario = Callable[[Path], tuple[Any, Any]]


def _copy_both(
    base: Path, setup: Callable[[Path], None], make_args: Scenario, function: str, **kwargs: Any
) -> None:
    """shutil's and cowpath's ``function(*make_args(area), **kwargs)`` on two equal areas, compared."""
    run_both(base, setup, lambda module, root: getattr(module, function)(*make_args(root), **kwargs))


@pytest.fixture(params=list(PATH_TYPES))
def path_type(request: pytest.FixtureRequest) -> Callable[[Path], Any]:
    return PATH_TYPES[request.param]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_new_destination(
    src_dst_dirs: tuple[Path, Path], path_type: Callable[[Path], Any], function: str
) -> None:
    def setup(a: Path, b: Path) -> None:
        (a / "src").write_bytes(_data(70_000))
        os.chmod(a / "src", 0o754)
        os.utime(a / "src", ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))

    def call(module: Any, a: Path, b: Path) -> Any:
        return getattr(module, function)(path_type(a / "src"), path_type(b / "dst"))

    run_both(src_dst_dirs, setup, call, mtimes=function == "copy2")
    if function == "copy2":
        assert os.stat(src_dst_dirs[1] / "cowpath" / "dst").st_mtime_ns == 1_600_000_000_987_654_321


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("old_size", [0, 100, 70_000, 200_000])
def test_existing_destination_written_in_place(any_fs: Path, function: str, old_size: int) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "dst").write_bytes(_data(old_size, seed=5))
        os.chmod(root / "dst", 0o600)
        os.link(root / "dst", root / "hardlink")

    inodes = {}

    def args(root: Path) -> tuple[Any, Any]:
        inodes[root.name] = os.stat(root / "dst").st_ino
        return str(root / "src"), str(root / "dst")

    _copy_both(any_fs, setup, args, function)
    for who in ("shutil", "cowpath"):
        assert os.stat(any_fs / who / "dst").st_ino == inodes[who]
        assert (any_fs / who / "hardlink").read_bytes() == (any_fs / who / "src").read_bytes()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_destination_symlink_is_written_through(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "target").write_bytes(b"old")
        (root / "dst").symlink_to("target")

    _copy_both(any_fs, setup, lambda r: (r / "src", r / "dst"), function)
    assert (any_fs / "cowpath" / "dst").is_symlink()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_dangling_destination_symlink_creates_its_target(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "dst").symlink_to("made-through-link")

    _copy_both(any_fs, setup, lambda r: (r / "src", r / "dst"), function)
    assert (any_fs / "cowpath" / "made-through-link").read_bytes() == _data(70_000)


@pytest.mark.parametrize("function", ["copy", "copy2"])
def test_into_directory(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "dir").mkdir()

    _copy_both(any_fs, setup, lambda r: (str(r / "src"), str(r / "dir")), function)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_symlink_source_not_followed(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "link").symlink_to("src")

    _copy_both(any_fs, setup, lambda r: (r / "link", r / "dst"), function, follow_symlinks=False)
    assert os.readlink(any_fs / "cowpath" / "dst") == "src"


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    "case",
    [
        "missing-source",
        "source-is-dir",
        "dest-is-dir",
        "dest-dir-missing",
        "trailing-slash",
        "fifo-source",
        "fifo-dest",
        "same-path",
        "hard-link",
        "symlink-to-same",
        "other-spelling",
    ],
)
def test_failures_match_shutil_and_lose_nothing(any_fs: Path, function: str, case: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "keep").write_bytes(b"precious" * 100)
        (root / "adir").mkdir()
        if case == "fifo-source":
            os.mkfifo(root / "fifo")
        if case == "fifo-dest":
            os.mkfifo(root / "fifo")
        if case == "hard-link":
            os.link(root / "src", root / "hl")
        if case == "symlink-to-same":
            (root / "sl").symlink_to("src")

    def args(root: Path) -> tuple[Any, Any]:
        return {
            "missing-source": (root / "nope", root / "keep"),
            "source-is-dir": (root / "adir", root / "keep"),
            "dest-is-dir": (root / "src", root / "adir"),
            "dest-dir-missing": (root / "src", root / "nodir" / "x"),
            "trailing-slash": (str(root / "src"), str(root / "newdir") + "/"),
            "fifo-source": (root / "fifo", root / "keep"),
            "fifo-dest": (root / "src", root / "fifo"),
            "same-path": (root / "src", root / "src"),
            "hard-link": (root / "src", root / "hl"),
            "symlink-to-same": (root / "src", root / "sl"),
            "other-spelling": (root / "src", root / "adir" / ".." / "src"),
        }[case]

    _copy_both(any_fs, setup, args, function)
    assert (any_fs / "cowpath" / "keep").read_bytes() == b"precious" * 100
    assert (any_fs / "cowpath" / "src").read_bytes() == _data(70_000)


def test_unreadable_source_as_another_user(any_fs: Path) -> None:
    """Root reads everything: the copy runs in a child that drops to nobody."""

    def setup(root: Path) -> None:
        _src_only(root)
        os.chmod(root / "src", 0o000)
        (root / "keep").write_bytes(b"precious")
        os.chmod(root, 0o777)
        os.chmod(root / "keep", 0o666)

    def call(module: Any, root: Path) -> Any:
        return module.copyfile(str(root / "src"), str(root / "keep"))

    seen = run_both(any_fs, setup, call, user=NOBODY)
    assert (seen.type, seen.errno, seen.filename) == (PermissionError, errno.EACCES, "ROOT0/src")
    assert (any_fs / "cowpath" / "keep").read_bytes() == b"precious"


@pytest.mark.parametrize("kind", list(PATH_TYPES))
@pytest.mark.parametrize("symlinks", [False, True])
@pytest.mark.parametrize("dirs_exist_ok", [False, True])
def test_copytree_matches(
    src_dst_dirs: tuple[Path, Path], kind: str, symlinks: bool, dirs_exist_ok: bool
) -> None:
    path_type = PATH_TYPES[kind]
    # ignore_patterns matches str patterns: with bytes paths shutil passes
    # bytes names, so a bytes-aware ignore is used there.
    if kind == "bytes":

        def ignore(directory: Any, names: list[Any]) -> set[Any]:
            return {n for n in names if n.endswith(b".tmp")}
    else:
        ignore = shutil.ignore_patterns("*.tmp")

    def setup(a: Path, b: Path) -> None:
        src = a / "src"
        (src / "sub" / "deep").mkdir(parents=True)
        (src / "f").write_bytes(_data(9000))
        (src / "sub" / "g").write_bytes(_data(50_000, 3))
        os.chmod(src / "sub" / "g", 0o700)
        (src / "sub" / "deep" / "h").write_bytes(b"")
        (src / "link").symlink_to("sub/g")
        (src / "ignored.tmp").write_text("skip me")
        if dirs_exist_ok:
            (b / "dst" / "sub").mkdir(parents=True)
            (b / "dst" / "sub" / "g").write_bytes(b"old")

    def call(module: Any, a: Path, b: Path) -> Any:
        return module.copytree(
            path_type(a / "src"),
            path_type(b / "dst"),
            symlinks=symlinks,
            dirs_exist_ok=dirs_exist_ok,
            ignore=ignore,
        )

    run_both(src_dst_dirs, setup, call)


def test_copytree_existing_destination_raises_like_shutil(any_fs: Path) -> None:
    (any_fs / "src").mkdir()
    (any_fs / "dst").mkdir()
    with pytest.raises(FileExistsError) as by_shutil:
        shutil.copytree(any_fs / "src", any_fs / "dst")
    with pytest.raises(FileExistsError) as by_cowpath:
        cowpath.copytree(any_fs / "src", any_fs / "dst")
    assert str(by_cowpath.value) == str(by_shutil.value)


def test_copytree_custom_copy_function_and_report(tmp_path: Path) -> None:
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "x").write_text("x")
    seen: list[tuple[str, str]] = []

    def custom(s: str, d: str) -> str:
        seen.append((s, d))
        return shutil.copyfile(s, d)

    report = cowpath.CopyReport()
    cowpath.copytree(tmp_path / "src", tmp_path / "dst", copy_function=custom, report=report)
    assert seen == [(str(tmp_path / "src" / "d" / "x"), str(tmp_path / "dst" / "d" / "x"))]
    assert report.files == 0  # a custom function's copies are its own business
