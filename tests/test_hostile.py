"""Hostile and unusual input: odd names, long names and paths, symlink loops,
kinds swapped, the same file under another name, special files, random trees.

Unless a difference is intended (and then it says so), cowpath's outcome is
compared with shutil's for the same input on the same filesystem: the
return value or the exception (type, errno, file names, message) and the
state of the directory afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import select
import shutil
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cowpath
from tests.faultutil import NOBODY, SmallFilesystems, in_child, leftovers
from tests.faultutil import walk_files as walk_tree_files
from tests.fsutil import force_named_staging, tree_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux filesystems and errno values")


def _outcome(call: Callable[[], Any], *roots: Any) -> tuple[Any, ...]:
    """The result or exception of ``call``, with the areas' roots made equal."""
    try:
        result = call()
    except Exception as exc:
        return (
            "raised",
            type(exc),
            getattr(exc, "errno", None),
            _norm(str(exc), roots),
            _norm(getattr(exc, "filename", None), roots),
            _norm(getattr(exc, "filename2", None), roots),
        )
    return ("returned", type(result), _norm(result, roots))


def _norm(value: Any, roots: tuple[Any, ...]) -> Any:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    for i, root in enumerate(roots):
        text = os.fsdecode(os.fspath(root))
        if isinstance(value, bytes):
            value = value.replace(os.fsencode(text), b"ROOT%d" % i)
        elif isinstance(value, str):
            value = value.replace(text, f"ROOT{i}")
    return value


def _both(base: Path, setup: Callable[[Path], None], call: Callable[[Any, Path], Any]) -> None:
    """Run ``call(module, root)`` with shutil and cowpath in two identical areas; compare."""
    outcomes, states = {}, {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = base / who
        root.mkdir()
        setup(root)
        outcomes[who] = _outcome(lambda m=module, r=root: call(m, r), root)
        states[who] = tree_state(root)
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    assert leftovers(base / "cowpath") == []


# -- names ------------------------------------------------------------------------

ODD_NAMES = [
    b"caf\xe9",  # Latin-1, not valid UTF-8
    b"\xff\xfe\x80",
    b"line\nbreak",
    b"tab\there",
    b"-starts-with-dash",
    b" spaces ",
    b"back\\slash",
    b"*?[glob]",
    "e\u0301-nfd".encode(),
    "\U0001f600-emoji".encode(),
    b".hidden",
    b".cowpath",  # looks like a staging name
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
@pytest.mark.parametrize("as_type", ["bytes", "str"])
@pytest.mark.parametrize("function", ["copyfile", "copy2", "copytree"])
def test_odd_names(any_fs: Path, name: bytes, as_type: str, function: str) -> None:
    """Bytes paths and str paths with surrogate escapes, for files and trees."""

    def setup(root: Path) -> None:
        raw = os.fsencode(root)
        os.mkdir(os.path.join(raw, b"tree"))
        with open(os.path.join(raw, b"tree", name), "wb") as f:
            f.write(b"data of " + name)
        os.symlink(name, os.path.join(raw, b"tree", b"link-" + name))
        with open(os.path.join(raw, name), "wb") as f:
            f.write(b"data of " + name)

    def call(module: Any, root: Path) -> Any:
        raw = os.fsencode(root)
        convert: Callable[[bytes], Any] = (lambda p: p) if as_type == "bytes" else os.fsdecode
        if function == "copytree":
            return module.copytree(
                convert(os.path.join(raw, b"tree")), convert(os.path.join(raw, b"new-" + name))
            )
        return getattr(module, function)(
            convert(os.path.join(raw, name)), convert(os.path.join(raw, name + b".copy"))
        )

    _both(any_fs, setup, call)


LONG_NAMES = {
    "ascii-255": "a" * 255,
    "two-byte-255": "\u00e4" * 127 + "x",
    "three-byte-255": "\u20ac" * 85,
    "four-byte-252": "\U0001f600" * 63,
    "non-utf8-255": os.fsdecode(b"\xff" * 255),
}


@pytest.mark.parametrize("name", list(LONG_NAMES.values()), ids=list(LONG_NAMES))
@pytest.mark.parametrize("atomic", [False, True])
def test_longest_names(any_fs: Path, staging: str, name: str, atomic: bool) -> None:
    """255-byte names work, in both kinds of staging and for an atomic replacement.

    A private staging name is made from the destination's name: it must be
    cut by bytes, not characters, to stay within NAME_MAX.
    """
    assert len(os.fsencode(name)) <= 255
    src = any_fs / "src"
    src.write_bytes(b"new" * 1000)
    dst = any_fs / name
    if atomic:
        dst.write_bytes(b"old")
    cowpath.copy2(src, dst, atomic=atomic)
    assert dst.read_bytes() == b"new" * 1000
    cowpath.copytree(any_fs, any_fs.parent / (any_fs.name + "-tree") / name)
    assert (any_fs.parent / (any_fs.name + "-tree") / name / name).read_bytes() == b"new" * 1000
    shutil.rmtree(any_fs.parent / (any_fs.name + "-tree"))
    assert leftovers(any_fs) == []


@pytest.mark.parametrize("function", ["copyfile", "copy", "copy2", "copytree"])
@pytest.mark.parametrize("where", ["source", "destination"])
def test_name_too_long(any_fs: Path, function: str, where: str) -> None:
    """A 256-byte name fails with ENAMETOOLONG naming it, as in shutil."""
    long_name = "n" * 256

    def setup(root: Path) -> None:
        (root / "src").mkdir()
        (root / "src" / "f").write_text("x")
        (root / "file").write_text("x")

    def call(module: Any, root: Path) -> Any:
        if function == "copytree":
            if where == "source":
                return module.copytree(root / long_name, root / "dst")
            return module.copytree(root / "src", root / long_name)
        if where == "source":
            return getattr(module, function)(root / long_name, root / "dst")
        return getattr(module, function)(root / "file", root / long_name)

    _both(any_fs, setup, call)


def _deep(root: Path, length: int) -> str:
    """Make a chain of directories under ``root`` whose relative path is
    exactly ``length`` bytes, creating each level through a directory
    descriptor so that no call needs the whole path; returns that path."""
    parts: list[str] = []
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while (room := length - len("/".join(parts)) - (1 if parts else 0)) > 0:
            part = "d" * min(200, room)
            os.mkdir(part, dir_fd=fd)
            new = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = new
            parts.append(part)
    finally:
        os.close(fd)
    return "/".join(parts)


PATH_MAX = 4096
# A staged tree is built in DST/.cowpath-<16 hex>: 26 more bytes in every path.
STAGING_BYTES = 26


def _copy_deep(module: Any, function: str, deep: str, name: str) -> Any:
    if function == "copytree":
        return module.copytree(os.path.join(deep, "s"), os.path.join(deep, "tt"))
    if function == "atomic" and module is cowpath:
        return cowpath.copyfile(os.path.join(deep, "f"), os.path.join(deep, name), atomic=True)
    if function == "atomic":
        return shutil.copyfile(os.path.join(deep, "f"), os.path.join(deep, name))
    return getattr(module, function)(os.path.join(deep, "f"), os.path.join(deep, name))


LIMITATION = pytest.mark.xfail(
    strict=True,
    reason="the staging name makes the path longer than the destination's: "
    "within 26 bytes of PATH_MAX the copy fails where shutil's succeeds",
)


@pytest.mark.parametrize(
    ("function", "longest"),
    [
        ("copyfile", PATH_MAX - 1),
        ("copyfile", PATH_MAX),
        ("copy2", PATH_MAX - 1),
        ("copy2", PATH_MAX),
        ("copytree", PATH_MAX - 1 - STAGING_BYTES),
        pytest.param("copytree", PATH_MAX - 1, marks=LIMITATION),
        ("copytree", PATH_MAX),
        ("atomic", PATH_MAX - 1 - STAGING_BYTES),
        pytest.param("atomic", PATH_MAX - 1, marks=LIMITATION),
    ],
)
def test_paths_near_path_max(
    any_fs: Path, function: str, longest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths up to PATH_MAX - 1 bytes work; PATH_MAX bytes fail, as in shutil.

    ``longest`` is the length of the longest destination path the copy
    makes. The test runs from inside the area (chdir): the paths given are
    relative, and their absolute form is longer than PATH_MAX.
    """
    outcomes, states = {}, {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = any_fs / who
        root.mkdir()
        monkeypatch.chdir(root)
        deep = _deep(root, 3900)
        # The longest path a copy makes: deep/NAME for a file; for a tree
        # deep/tt/inner/NAME, copied from deep/s/inner/NAME, one byte shorter.
        # A tree is staged in deep/tt/.cowpath-<hex>, which fits.
        name = "x" * (longest - len(deep) - (len("/tt/inner/") if function == "copytree" else 1))
        inner = name if function == "copytree" else "g"
        for path in ("f", "old", f"s/inner/{inner}"):
            os.makedirs(os.path.dirname(os.path.join(deep, path)), exist_ok=True)
            with open(os.path.join(deep, path), "w") as f:
                f.write(f"data of {path}")
        if function == "atomic":
            os.rename(os.path.join(deep, "old"), os.path.join(deep, name))
        # Absolute, the longest path would be too long.
        assert len(os.path.abspath(deep)) - len(deep) + longest > PATH_MAX
        outcomes[who] = _outcome(lambda m=module, d=deep, n=name: _copy_deep(m, function, d, n))
        states[who] = {
            entry: (os.path.isdir(os.path.join(deep, entry)), len(os.listdir(deep)))
            for entry in sorted(os.listdir(deep))
        }
        assert leftovers(".") == []
    assert outcomes["cowpath"] == outcomes["shutil"]
    expected = "returned" if longest < PATH_MAX else "raised"
    assert outcomes["cowpath"][0] == expected
    if expected == "raised" and function == "copytree":
        assert outcomes["cowpath"][1] is shutil.Error
        assert "[Errno 36] File name too long" in outcomes["cowpath"][3]
    elif expected == "raised":
        assert outcomes["cowpath"][2] == errno.ENAMETOOLONG
    assert states["cowpath"] == states["shutil"]


# -- links, kinds, the same file ------------------------------------------------------


def _links_area(root: Path) -> None:
    (root / "file").write_bytes(b"file data" * 100)
    (root / "dir").mkdir()
    (root / "dir" / "inner").write_bytes(b"inner")
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    (root / "self").symlink_to("self")
    (root / "dangling").symlink_to("nowhere")
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"f")
    (tree / "loop").symlink_to("loop")
    (tree / "dangling-relative").symlink_to("../missing")
    (tree / "dangling-absolute").symlink_to("/nonexistent/cowpath-test")
    (tree / "to-file").symlink_to("sub/f")
    (root / "with-up").mkdir()
    (root / "with-up" / "up").symlink_to("..")  # a link to an ancestor


def _dir_over_file(m: Any, r: Path) -> Any:
    """dirs_exist_ok where the destination has a directory for the source's file."""
    (r / "out" / "inner").mkdir(parents=True)
    return m.copytree(r / "dir", r / "out", dirs_exist_ok=True)


def _file_over_dir(m: Any, r: Path) -> Any:
    """dirs_exist_ok where the destination has a file for the source's directory."""
    (r / "out").mkdir()
    (r / "out" / "sub").write_bytes(b"a file")
    return m.copytree(r / "tree", r / "out", symlinks=True, dirs_exist_ok=True)


def _same_hard_link(m: Any, r: Path) -> Any:
    os.link(r / "file", r / "hard")
    return m.copyfile(r / "file", r / "hard")


CASES: dict[str, Callable[[Any, Path], Any]] = {
    "copyfile-loop": lambda m, r: m.copyfile(r / "loop-a", r / "out"),
    "copy2-self-loop": lambda m, r: m.copy2(r / "self", r / "out"),
    "copyfile-onto-loop": lambda m, r: m.copyfile(r / "file", r / "loop-a"),
    "copyfile-loop-not-followed": lambda m, r: m.copyfile(r / "loop-a", r / "out", follow_symlinks=False),
    "copy2-dangling-not-followed": lambda m, r: m.copy2(r / "dangling", r / "out", follow_symlinks=False),
    "copyfile-dangling": lambda m, r: m.copyfile(r / "dangling", r / "out"),
    "copyfile-onto-dangling": lambda m, r: m.copyfile(r / "file", r / "dangling"),
    "copytree-links-followed": lambda m, r: m.copytree(r / "tree", r / "out"),
    "copytree-links-kept": lambda m, r: m.copytree(r / "tree", r / "out", symlinks=True),
    "copytree-dangling-ignored": lambda m, r: m.copytree(
        r / "tree", r / "out", ignore_dangling_symlinks=True
    ),
    "copytree-ancestor-link-kept": lambda m, r: m.copytree(r / "with-up", r / "out", symlinks=True),
    "copytree-of-a-file": lambda m, r: m.copytree(r / "file", r / "out"),
    "copytree-onto-a-file": lambda m, r: m.copytree(r / "dir", r / "file"),
    "copytree-onto-a-file-exist-ok": lambda m, r: m.copytree(r / "dir", r / "file", dirs_exist_ok=True),
    "copytree-dir-over-file": _dir_over_file,
    "copytree-file-over-dir": _file_over_dir,
    "copytree-onto-itself": lambda m, r: m.copytree(r / "dir", r / "dir"),
    "copytree-into-itself": lambda m, r: m.copytree(r / "dir", r / "dir" / "copy"),
    "copyfile-file-onto-dir": lambda m, r: m.copyfile(r / "file", r / "dir"),
    "copyfile-dir-onto-file": lambda m, r: m.copyfile(r / "dir", r / "file"),
    "copy-into-dir": lambda m, r: m.copy(r / "file", r / "dir"),
    "copyfile-same-dot-spelling": lambda m, r: m.copyfile("./file", "file"),
    "copyfile-same-dotdot-spelling": lambda m, r: m.copyfile("dir/../file", "./dir/../file"),
    "copy2-same-through-dir-link": lambda m, r: m.copy2(
        r / "dir" / "inner", r / "with-up" / "up" / "dir" / "inner"
    ),
    "copyfile-same-hard-link": _same_hard_link,
}


@pytest.mark.parametrize("case", list(CASES))
def test_links_kinds_and_same_files_as_shutil(
    any_fs: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symlink loops (ELOOP), dangling links, a directory where a file is
    expected and the reverse, the same file under other spellings (a
    SameFileError, nothing touched): each as shutil does it."""

    def call(module: Any, root: Path) -> Any:
        monkeypatch.chdir(root)
        return CASES[case](module, root)

    _both(any_fs, _links_area, call)


def test_same_file_in_copytree_is_listed_whole(any_fs: Path) -> None:
    """copytree onto itself with dirs_exist_ok: every file is its own
    destination. shutil lists each SameFileError's message one character
    at a time (it extends its error list with the message string, since
    SameFileError is a shutil.Error); cowpath lists (src, dst, message),
    as for any other error. The files are untouched in both."""
    _links_area(any_fs)
    before = tree_state(any_fs / "dir", mtimes=True)
    with pytest.raises(shutil.Error) as by_shutil:
        shutil.copytree(any_fs / "dir", any_fs / "dir", dirs_exist_ok=True)
    with pytest.raises(shutil.Error) as by_cowpath:
        cowpath.copytree(any_fs / "dir", any_fs / "dir", dirs_exist_ok=True)
    message = f"{os.path.join(any_fs / 'dir', 'inner')!r} are the same file"
    assert "".join(by_shutil.value.args[0]).endswith(message)
    ((src, dst, why),) = by_cowpath.value.args[0]
    assert (src, dst) == (str(any_fs / "dir" / "inner"), str(any_fs / "dir" / "inner"))
    assert why.endswith(message)
    assert tree_state(any_fs / "dir", mtimes=True) == before


# -- special files ---------------------------------------------------------------------


def _special_area(root: Path) -> None:
    os.mkfifo(root / "fifo")
    os.mknod(root / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # /dev/zero: never ends
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.fspath(root / "socket"))
    listener.close()
    (root / "tree").mkdir()
    (root / "tree" / "plain").write_bytes(b"plain")
    for name in ("fifo", "zero", "socket"):
        os.link(root / name, root / "tree" / name)


def _copy_special(root: Path, function: str, source: str) -> tuple[Any, ...]:
    if function == "copytree":
        return _outcome(lambda: cowpath.copytree(root / "tree", root / "tree-copy"), root)
    return _outcome(lambda: getattr(cowpath, function)(root / source, root / f"out-{source}"), root)


@pytest.mark.parametrize("source", ["fifo", "zero", "null", "socket"])
@pytest.mark.parametrize("function", ["copyfile", "copy2"])
def test_special_files_raise_and_never_hang(any_fs: Path, function: str, source: str) -> None:
    """A FIFO, a character device or a socket as the source: SpecialFileError
    naming it, at once (each copy runs in a child with a time limit: a copy
    of /dev/zero or of a FIFO would otherwise never end), and no file made."""
    _special_area(any_fs)
    outcome = in_child(_copy_special, any_fs, function, source, timeout=20)
    kind = {"fifo": "named pipe", "zero": "character device", "null": "character device", "socket": "socket"}
    assert outcome[:2] == ("raised", shutil.SpecialFileError)
    assert outcome[3] == f"`ROOT0/{source}` is a {kind[source]}"
    assert not os.path.lexists(any_fs / f"out-{source}")


def test_special_files_in_a_tree(any_fs: Path) -> None:
    """In a tree each special file is listed as SpecialFileError; the rest is copied."""
    _special_area(any_fs)
    outcome = in_child(_copy_special, any_fs, "copytree", "", timeout=20)
    assert outcome[:2] == ("raised", shutil.Error)
    for name, kind in (("fifo", "named pipe"), ("zero", "character device"), ("socket", "socket")):
        assert f"`ROOT0/tree/{name}` is a {kind}" in outcome[3]
    assert (any_fs / "tree-copy" / "plain").read_bytes() == b"plain"
    assert sorted(os.listdir(any_fs / "tree-copy")) == ["plain"]


def _swap_for_fifo(root: Path, workers: int) -> tuple[Any, ...]:
    def ignore(directory: Any, names: list[str]) -> list[str]:
        (root / "tree" / "plain").unlink()
        os.mkfifo(root / "tree" / "plain")
        return []

    return _outcome(
        lambda: cowpath.copytree(root / "tree", root / "copy", ignore=ignore, workers=workers), root
    )


@pytest.mark.parametrize("workers", [1, 4])
def test_file_swapped_for_a_fifo_after_the_listing_never_blocks(tmp_path: Path, workers: int) -> None:
    """A file listed by the walk and replaced by a FIFO before it is copied:
    the copy opens it without blocking and reports it as shutil would."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "plain").write_bytes(b"plain")
    outcome = in_child(_swap_for_fifo, tmp_path, workers, timeout=20)
    assert outcome[:2] == ("raised", shutil.Error)
    assert "`ROOT0/tree/plain` is a named pipe" in outcome[3]


def test_empty_and_sparse_files_in_a_tree(any_fs: Path) -> None:
    """Empty files and sparse files (holes kept, as far as the filesystem
    keeps them) through copytree: the same bytes as the source."""
    tree = any_fs / "tree"
    tree.mkdir()
    (tree / "empty").write_bytes(b"")
    with open(tree / "sparse", "wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.seek(32 * 1024 * 1024)
        f.write(b"middle")
    with open(tree / "all-hole", "wb") as f:
        f.truncate(10 * 1024 * 1024)
    cowpath.copytree(tree, any_fs / "copy")
    for name in ("empty", "sparse", "all-hole"):
        assert (any_fs / "copy" / name).read_bytes() == (tree / name).read_bytes()
        assert os.stat(any_fs / "copy" / name).st_blocks <= os.stat(tree / name).st_blocks + 256


# -- files planted by another user --------------------------------------------


@pytest.fixture
def small() -> Iterator[SmallFilesystems]:
    """Filesystems made for this test alone, where nobody may enter."""
    filesystems = SmallFilesystems()
    yield filesystems
    filesystems.close()


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
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        planted = shared / f"report-{who}"
        in_child(_plant, planted, user=NOBODY)
        outcomes.append(_outcome(lambda m=module, p=planted: getattr(m, function)(secret, p), planted))
        assert planted.read_bytes() == b""
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][:3] == ("raised", PermissionError, errno.EACCES)


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


# -- no permission window ----------------------------------------------------------

SECRET = b"SECRET-DATA-" * 4000


class Spy:
    """Another user (nobody), watching a directory for files it can open.

    It scans the directory over and over and opens every file it can, and
    keeps the descriptors: whoever opens a file while its mode allows it
    can read its data later, whatever the mode becomes. On each
    :meth:`sync` (called from the copying process at every step it takes,
    through an audit hook) it scans once more before the copy goes on, so
    it sees the state between any two steps. It starts with the copy (the
    first step): :meth:`finish` returns every mode it saw for each name
    from then on, and the names whose data it could read.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = os.pipe()
        self.replies = os.pipe()
        self.results = os.pipe()
        self.parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            try:
                # Not holding the test run's output open, and ending with it.
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                self._watch()
            finally:
                os._exit(0)

    def _watch(self) -> None:  # pragma: no cover - child
        modes: dict[str, set[int]] = {}
        opened: dict[tuple[str, int], int] = {}
        armed = False

        def scan() -> None:
            if not armed:
                return
            for dirpath, dirnames, filenames in os.walk(self.root):
                for name in dirnames + filenames:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    relative = os.path.relpath(path, self.root)
                    modes.setdefault(relative, set()).add(stat.S_IMODE(st.st_mode))
                    if stat.S_ISREG(st.st_mode) and (relative, st.st_ino) not in opened:
                        with contextlib.suppress(OSError):
                            opened[relative, st.st_ino] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

        while os.getppid() == self.parent:
            ready, _, _ = select.select([self.requests[0]], [], [], 0 if armed else 0.01)
            if ready:
                request = os.read(self.requests[0], 1)
                armed = True
                scan()
                if request == b"q":
                    break
                os.write(self.replies[1], b"k")
            else:
                scan()
        stolen = set()
        for (relative, _), fd in opened.items():
            os.lseek(fd, 0, os.SEEK_SET)
            if b"SECRET-DATA-" in os.read(fd, len(SECRET)):
                stolen.add(relative)
        result = pickle.dumps(({k: sorted(v) for k, v in modes.items()}, sorted(stolen)))
        with os.fdopen(self.results[1], "wb") as f:
            f.write(result)

    def sync(self) -> None:
        os.write(self.requests[1], b"s")
        os.read(self.replies[0], 1)

    def finish(self) -> tuple[dict[str, list[int]], list[str]]:
        os.write(self.requests[1], b"q")
        os.close(self.results[1])
        with os.fdopen(self.results[0], "rb") as f:
            data = f.read()
        os.waitpid(self.pid, 0)
        for fd in (*self.requests, *self.replies):
            os.close(fd)
        modes, stolen = pickle.loads(data)
        return modes, stolen


def _copy_watched(spy: Spy, call: Callable[[], Any], named: bool) -> None:
    """In a child (root, umask 022): run ``call``; the spy scans at every audited step."""
    os.umask(0o022)
    if named:
        force_named_staging()
    lock = threading.Lock()
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching[0]:
            with lock:
                spy.sync()

    sys.addaudithook(hook)
    try:
        call()
    finally:
        watching[0] = False


def _secret_source(where: Path) -> Path:
    src = where / "secret"
    src.write_bytes(SECRET)
    os.chmod(src, 0o600)
    return src


def _watched(
    small: SmallFilesystems, kind: str, copy: Callable[[Path, Path], Any], named: bool = False
) -> Any:
    base = small.make(kind)
    src = _secret_source(base)
    out = base / "out"
    out.mkdir(mode=0o755)
    (out / "existing").write_bytes(b"old")
    os.chmod(out / "existing", 0o644)
    spy = Spy(out)
    try:
        in_child(_copy_watched, spy, lambda: copy(src, out), named)
    finally:
        result = spy.finish()
    return result


FILE_COPIES: dict[str, Callable[[Path, Path], Any]] = {
    "copy": lambda src, out: cowpath.copy(src, out / "dst"),
    "copy2": lambda src, out: cowpath.copy2(src, out / "dst"),
    "copy2-never": lambda src, out: cowpath.copy2(src, out / "dst", reflink="never"),
    "CowPath.copy": lambda src, out: cowpath.CowPath(src).copy(out / "dst", preserve_metadata=True),
    "copy2-atomic-onto-existing": lambda src, out: (
        os.rename(out / "existing", out / "dst"),
        cowpath.copy2(src, out / "dst", atomic=True),
    ),
}


@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_shutil_has_a_permission_window(small: SmallFilesystems, kind: str) -> None:
    """The spy is able to catch the window: shutil.copy makes the file 0644,
    writes the data, then sets 0600; the spy opens it meanwhile and reads
    the data afterwards."""
    modes, stolen = _watched(small, kind, lambda src, out: shutil.copy(src, out / "dst"))
    assert 0o644 in modes["dst"]
    assert stolen == ["dst"]


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
@pytest.mark.parametrize("case", list(FILE_COPIES))
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_no_permission_window_for_files(small: SmallFilesystems, kind: str, case: str, named: bool) -> None:
    """A 0600 source's copy is never visible with a wider mode, under any name."""
    modes, stolen = _watched(small, kind, FILE_COPIES[case], named)
    assert stolen == []
    assert modes["dst"] == [0o600] or case.endswith("existing")
    for name, seen in modes.items():
        assert set(seen) <= {0o600, 0o644}, (name, seen)


def test_in_place_copy_reaches_who_had_the_file_open(small: SmallFilesystems) -> None:
    """The limit of the in-place rewrite (shutil's semantics): whoever may
    open the existing destination before the copy narrows its mode keeps a
    descriptor to the same file and reads the new data. atomic=True
    replaces the file instead, and that descriptor keeps the old data."""
    modes, stolen = _watched(small, "xfs", lambda src, out: cowpath.copy(src, out / "existing"))
    assert stolen == ["existing"]
    assert modes["existing"] == [0o600, 0o644]
    modes, stolen = _watched(small, "xfs", lambda src, out: cowpath.copy(src, out / "existing", atomic=True))
    assert stolen == []


def _secret_tree(src: Path, out: Path, function: Any) -> Any:
    tree = src.parent / "tree"
    if not tree.exists():
        (tree / "private").mkdir(parents=True)
        (tree / "private" / "inside").write_bytes(SECRET)
        os.chmod(tree / "private" / "inside", 0o644)
        os.chmod(tree / "private", 0o700)
        (tree / "top-secret").write_bytes(SECRET)
        os.chmod(tree / "top-secret", 0o600)
        (tree / "public").mkdir()
        (tree / "public" / "readme").write_bytes(b"anyone may read this")
        closed = src.parent / "closed"
        closed.mkdir(mode=0o700)
        (closed / "inside").write_bytes(SECRET)
        os.chmod(closed / "inside", 0o644)
    function(src.parent / "closed", out / "closed")
    return function(tree, out / "copy")


@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_shutil_copytree_has_a_permission_window(small: SmallFilesystems, kind: str) -> None:
    _, stolen = _watched(small, kind, lambda src, out: _secret_tree(src, out, shutil.copytree))
    assert "copy/top-secret" in stolen
    assert "copy/private/inside" in stolen
    assert "closed/inside" in stolen


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_no_permission_window_for_trees(small: SmallFilesystems, kind: str, workers: int) -> None:
    """Nothing of a tree is readable by others unless the source let them:
    not a 0600 file, and not a 0644 file inside a 0700 directory (the root
    or below it)."""

    def copytree(src: Path, dst: Path) -> Any:
        return cowpath.copytree(src, dst, workers=workers)

    modes, stolen = _watched(small, kind, lambda src, out: _secret_tree(src, out, copytree))
    assert stolen == []
    assert modes["copy/top-secret"] == [0o600]
    assert "copy/private/inside" not in modes or modes["copy/private"] == [0o700]


# -- random trees -------------------------------------------------------------------------

NAME_PARTS = [b"a", b"B", b"caf\xe9", b"\xff", b"new\nline", b" ", b"-", b".", b"\xc3\xa4", b"x" * 40, b"*"]
NAMES = (
    st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=3)
    .map(b"".join)
    .filter(lambda n: n not in (b".", b".."))
)
ENTRY = st.tuples(
    st.lists(NAMES, min_size=1, max_size=3),  # path below the top
    st.sampled_from(["file", "empty", "dir", "link-file", "link-dangling", "link-absolute", "link-loop"]),
    st.sampled_from([0o644, 0o600, 0o755, 0o444]),
)


def _prepare(root: bytes, parts: list[bytes]) -> bytes | None:
    """The path for ``parts`` below ``root`` with its directories made, or
    None where something other than a directory is in the way."""
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        if not os.path.lexists(path):
            os.mkdir(path)
        elif os.path.islink(path) or not os.path.isdir(path):
            return None
    path = os.path.join(path, parts[-1])
    return None if os.path.lexists(path) else path


def _build(root: bytes, entries: list[tuple[list[bytes], str, int]]) -> None:
    """Make the entries under ``root`` (those that clash with earlier ones
    are skipped); every time is then set to a fixed value, so that two
    builds compare equal."""
    os.mkdir(root)
    files: list[bytes] = []
    for parts, kind, mode in entries:
        path = _prepare(root, parts)
        if path is None:
            continue
        if kind in ("file", "empty"):
            with open(path, "wb") as f:
                f.write(b"" if kind == "empty" else b"data of " + path[len(root) :] * 50)
            os.chmod(path, mode)
            files.append(path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "link-file" and files:
            os.symlink(os.path.relpath(files[-1], os.path.dirname(path)), path)
        elif kind == "link-absolute" and files:
            os.symlink(files[0], path)
        elif kind == "link-loop":
            os.symlink(os.path.basename(path), path)
        else:
            os.symlink(b"missing-" + os.path.basename(path), path)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(1_000_000_000, 1_500_000_000), follow_symlinks=False)
    os.utime(root, ns=(1_000_000_000, 1_500_000_000))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(ENTRY, min_size=1, max_size=14),
    symlinks=st.booleans(),
    ignore_dangling=st.booleans(),
    workers=st.sampled_from([1, 2, 8]),
    as_bytes=st.booleans(),
)
def test_random_trees_as_shutil(
    any_fs: Path,
    entries: list[tuple[list[bytes], str, int]],
    symlinks: bool,
    ignore_dangling: bool,
    workers: int,
    as_bytes: bool,
) -> None:
    """Random trees of files (empty, read-only, 0600), directories and
    symlinks (to files, absolute, dangling, looping), with names that are
    not UTF-8, hold newlines or look like "." prefixes: the same copy, the
    same errors as shutil's, and no staging left behind."""
    base = any_fs / os.urandom(6).hex()
    base.mkdir()
    outcomes, states = {}, {}
    for who, module in (("shutil", shutil), ("cowpath", cowpath)):
        root = os.fsencode(base / who)
        os.mkdir(root)
        _build(os.path.join(root, b"src"), entries)
        src, dst = os.path.join(root, b"src"), os.path.join(root, b"dst")
        args: tuple[Any, Any] = (src, dst) if as_bytes else (os.fsdecode(src), os.fsdecode(dst))
        extra = {"workers": workers} if module is cowpath else {}
        outcomes[who] = _outcome(
            lambda m=module, a=args, x=extra: m.copytree(
                *a, symlinks=symlinks, ignore_dangling_symlinks=ignore_dangling, **x
            ),
            root,
        )
        state = tree_state(os.fsdecode(dst), mtimes=True) if os.path.isdir(dst) else {}
        states[who] = {k: ("link", _norm(v[1], (root,))) if v[0] == "link" else v for k, v in state.items()}
        assert leftovers(root) == []
    assert outcomes["cowpath"] == outcomes["shutil"]
    assert states["cowpath"] == states["shutil"]
    shutil.rmtree(base)


# -- temporary names ---------------------------------------------------------------------

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


@pytest.mark.parametrize("staging", ["unnamed", "named"])
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
    monkeypatch.setattr(cowpath._staging.secrets, "token_hex", lambda n: tokens.pop(0))
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
            for path in walk_tree_files(dst):
                assert path.read_bytes() == (tmp_path / "tree" / path.relative_to(dst)).read_bytes()
        elif os.path.lexists(dst):
            assert dst.read_bytes() in (b"old", b"new data" * 1000), (step, outcome)
        if case != "copy2-atomic" and os.path.lexists(dst):
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        if not reached:
            break
    assert step > 5
