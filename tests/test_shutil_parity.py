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
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cowpath
from tests.fsutil import tree_state

PATH_TYPES: dict[str, Callable[[Path], Any]] = {
    "str": str,
    "bytes": lambda p: os.fsencode(str(p)),
    "Path": Path,
    "CowPath": cowpath.CowPath,
}
FUNCTIONS = ["copyfile", "copy", "copy2"]


def _outcome(call: Callable[[], Any], root: Path) -> tuple[Any, ...]:
    """What a caller observes of a call: its result or its exception."""
    try:
        result = call()
    except Exception as exc:
        return (
            "raised",
            type(exc),
            _norm(str(exc), root),
            _norm(getattr(exc, "filename", None), root),
            _norm(getattr(exc, "filename2", None), root),
            getattr(exc, "errno", None),
        )
    return ("returned", type(result), _norm(result, root))


def _norm(value: Any, root: Path) -> Any:
    """Make a value comparable across the two areas: their roots differ."""
    if isinstance(value, bytes):
        return value.replace(os.fsencode(str(root)), b"ROOT")
    if isinstance(value, os.PathLike):
        return type(value), str(value).replace(str(root), "ROOT")
    if isinstance(value, str):
        return value.replace(str(root), "ROOT")
    return value


def _state(root: Path) -> dict[str, tuple[Any, ...]]:
    return tree_state(root)


Scenario = Callable[[Path], tuple[Any, Any]]


def _run_both(
    base: Path, setup: Callable[[Path], None], make_args: Scenario, function: str, **kwargs: Any
) -> None:
    """Set up two identical areas, run shutil's and cowpath's function, compare."""
    outcomes = {}
    states = {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = base / who
        root.mkdir()
        setup(root)
        src, dst = make_args(root)
        outcomes[who] = _outcome(lambda m=module, s=src, d=dst: getattr(m, function)(s, d, **kwargs), root)
        states[who] = _state(root)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]


def _data(size: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def _src_only(root: Path) -> None:
    (root / "src").write_bytes(_data(70_000))
    os.chmod(root / "src", 0o754)


@pytest.fixture(params=list(PATH_TYPES))
def path_type(request: pytest.FixtureRequest) -> Callable[[Path], Any]:
    return PATH_TYPES[request.param]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_new_destination(
    src_dst_dirs: tuple[Path, Path], path_type: Callable[[Path], Any], function: str
) -> None:
    a, b = src_dst_dirs
    for who in ("shutil", "cowpath"):
        (a / who).mkdir(exist_ok=True)
        (b / who).mkdir(exist_ok=True)
        (a / who / "src").write_bytes(_data(70_000))
        os.chmod(a / who / "src", 0o754)
        os.utime(a / who / "src", ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))
    got = {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        result = getattr(module, function)(path_type(a / who / "src"), path_type(b / who / "dst"))
        st = os.stat(b / who / "dst")
        got[who] = (
            _norm(result, b / who),
            (b / who / "dst").read_bytes(),
            stat.S_IMODE(st.st_mode),
            st.st_mtime_ns if function == "copy2" else None,
        )
    assert got["cowpath"] == got["shutil"]
    if function == "copy2":
        assert got["cowpath"][3] == 1_600_000_000_987_654_321


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

    _run_both(any_fs, setup, args, function)
    for who in ("shutil", "cowpath"):
        assert os.stat(any_fs / who / "dst").st_ino == inodes[who]
        assert (any_fs / who / "hardlink").read_bytes() == (any_fs / who / "src").read_bytes()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_destination_symlink_is_written_through(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "target").write_bytes(b"old")
        (root / "dst").symlink_to("target")

    _run_both(any_fs, setup, lambda r: (r / "src", r / "dst"), function)
    assert (any_fs / "cowpath" / "dst").is_symlink()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_dangling_destination_symlink_creates_its_target(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "dst").symlink_to("made-through-link")

    _run_both(any_fs, setup, lambda r: (r / "src", r / "dst"), function)
    assert (any_fs / "cowpath" / "made-through-link").read_bytes() == _data(70_000)


@pytest.mark.parametrize("function", ["copy", "copy2"])
def test_into_directory(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "dir").mkdir()

    _run_both(any_fs, setup, lambda r: (str(r / "src"), str(r / "dir")), function)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_symlink_source_not_followed(any_fs: Path, function: str) -> None:
    def setup(root: Path) -> None:
        _src_only(root)
        (root / "link").symlink_to("src")

    _run_both(any_fs, setup, lambda r: (r / "link", r / "dst"), function, follow_symlinks=False)
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

    _run_both(any_fs, setup, args, function)
    assert (any_fs / "cowpath" / "keep").read_bytes() == b"precious" * 100
    assert (any_fs / "cowpath" / "src").read_bytes() == _data(70_000)


def test_unreadable_source_as_another_user(any_fs: Path) -> None:
    """Root reads everything: the check runs in a child that drops to nobody."""
    outcomes = []
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = any_fs / who
        root.mkdir()
        _src_only(root)
        os.chmod(root / "src", 0o000)
        (root / "keep").write_bytes(b"precious")
        os.chmod(root, 0o777)
        os.chmod(root / "keep", 0o666)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    module.copyfile(str(root / "src"), str(root / "keep"))
                    message = "no error"
                except OSError as exc:
                    message = f"{type(exc).__name__}|{exc.errno}|{_norm(exc.filename, root)}"
                os.write(write, message.encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            outcomes.append(f.read().decode())
        os.waitpid(pid, 0)
        assert (root / "keep").read_bytes() == b"precious"
    assert outcomes[0] == outcomes[1] == f"PermissionError|{errno.EACCES}|ROOT/src"


@pytest.mark.parametrize("kind", list(PATH_TYPES))
@pytest.mark.parametrize("symlinks", [False, True])
@pytest.mark.parametrize("dirs_exist_ok", [False, True])
def test_copytree_matches(
    src_dst_dirs: tuple[Path, Path], kind: str, symlinks: bool, dirs_exist_ok: bool
) -> None:
    a, b = src_dst_dirs
    path_type = PATH_TYPES[kind]
    # ignore_patterns matches str patterns: with bytes paths shutil passes
    # bytes names, so a bytes-aware ignore is used there.
    if kind == "bytes":

        def ignore(directory: Any, names: list[Any]) -> set[Any]:
            return {n for n in names if n.endswith(b".tmp")}
    else:
        ignore = shutil.ignore_patterns("*.tmp")
    results = {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        src = a / who / "src"
        (src / "sub" / "deep").mkdir(parents=True)
        (src / "f").write_bytes(_data(9000))
        (src / "sub" / "g").write_bytes(_data(50_000, 3))
        os.chmod(src / "sub" / "g", 0o700)
        (src / "sub" / "deep" / "h").write_bytes(b"")
        (src / "link").symlink_to("sub/g")
        (src / "ignored.tmp").write_text("skip me")
        dst = b / who / "dst"
        if dirs_exist_ok:
            (dst / "sub").mkdir(parents=True)
            (dst / "sub" / "g").write_bytes(b"old")
        ret = module.copytree(
            path_type(src), path_type(dst), symlinks=symlinks, dirs_exist_ok=dirs_exist_ok, ignore=ignore
        )
        results[who] = (_norm(ret, b / who), _state(dst))
    assert results["cowpath"] == results["shutil"]


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
