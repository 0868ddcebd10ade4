"""Property-based: random files, trees and calls give shutil's outcome, whatever they hold.

Each example builds one random area twice (tests/differential.py): a source
tree of files with odd names, modes (setuid, setgid, read-only, none),
extended attributes and POSIX ACLs, owners, hard links, symlinks (into the
tree, out of it, dangling, to /dev/null) and named pipes; often an
existing destination tree with names of its own, hard-linked to each other
or to the source, symlinks written through, setgid directories and default
ACLs. Then one call, shutil's and cowpath's, each in a child running as
root or as nobody, sometimes under a file size limit (RLIMIT_FSIZE) that
makes larger writes fail part-way, with an ``ignore`` or ``copy_function``
that may raise part-way. Outcomes and resulting areas must be equal, but
for the differences docs/migrating.md lists as deliberate, each allowed
here in one place (:func:`_allowed`).
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cowpath
from tests.differential import OLD_TIME, Areas, areas_fixture, diff, report, run_both
from tests.faultutil import NOBODY

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="loop-mounted Linux filesystems")

# A few seconds per test in the suite; COWPATH_PARITY_EXAMPLES=2000 for a deep run.
SETTINGS = settings(
    max_examples=int(os.environ.get("COWPATH_PARITY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KINDS = ["btrfs", "xfs", "ext4", "tmpfs"]
OTHER = 4321  # a user and group that is neither root nor nobody

# Names a tree may hold: odd ones too (a newline, a leading dash, a byte
# that is not UTF-8, which str paths carry as a surrogate escape).
NAMES = ["a", "b", "x y", "-d", ".h", "é", "n\nl", os.fsdecode(b"\xff")]
DIRS = ["", "s", "s/t", "u"]
MODES = [0o644, 0o644, 0o600, 0o444, 0o755, 0o000, 0o4755, 0o2755, 0o6711, 0o1777]
DIR_MODES = [0o755, 0o755, 0o700, 0o750, 0o2775, 0o1777, 0o555]
LIMIT = 3000  # RLIMIT_FSIZE when a fault is drawn: larger writes fail part-way
DATA = [b"", b"x", b"0123456789" * 500, bytes(range(256)) * 40, b"=" * LIMIT]


# -- what an area holds ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, link, hard, fifo
    path: str
    data: int = 0  # an index into DATA (short in a failure's report)
    mode: int = 0o644
    xattrs: tuple[tuple[str, bytes], ...] = ()
    acl: bool = False
    owner: str = "me"  # me (the caller), root, other
    mtime: int = OLD_TIME
    target: str = ""  # a link's text; a hard link's other path


@dataclass
class Scenario:
    kind: str
    user: str
    entries: list[Entry]
    call: str
    args: dict[str, Any] = field(default_factory=dict)
    src: str = "src"
    dst: str = "dst"
    path_type: str = "str"
    fsize: int | None = None
    setgid_parent: bool = False
    default_acl: bool = False


def _acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A POSIX ACL in the kernel's xattr form (version 2, then tag, perm, id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


ANY = 0xFFFFFFFF
# user::rw- user:4321:r-- group::r-- mask::r-- other::r--
ACCESS_ACL = _acl([(0x01, 6, ANY), (0x02, 4, OTHER), (0x04, 4, ANY), (0x10, 4, ANY), (0x20, 4, ANY)])
# As a default ACL of a directory: new entries get it, and their mode from it, not the umask.
DEFAULT_ACL = _acl([(0x01, 7, ANY), (0x02, 5, OTHER), (0x04, 5, ANY), (0x10, 7, ANY), (0x20, 0, ANY)])


def _uid(owner: str, user: str) -> int:
    me = NOBODY if user == "nobody" else 0
    return {"me": me, "root": 0, "other": OTHER}[owner]


def _build(root: Path, scenario: Scenario) -> None:
    """Make the scenario's entries under ``root``, owners and times last."""
    user = scenario.user
    me = _uid("me", user)
    os.chown(root, me, me)
    parent = root
    if scenario.setgid_parent:
        parent = root / "g"
        parent.mkdir()
        os.chown(parent, me, OTHER)
        os.chmod(parent, 0o2775)
    if scenario.default_acl:
        os.setxattr(parent, "system.posix_acl_default", DEFAULT_ACL)
    modes: list[tuple[Path, Entry]] = []
    for entry in scenario.entries:
        path = root / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            path.mkdir(exist_ok=True)
        elif entry.kind == "file":
            path.write_bytes(DATA[entry.data])
        elif entry.kind == "link":
            os.symlink(entry.target, path)
        elif entry.kind == "hard":
            os.link(root / entry.target, path)
            continue  # its inode's attributes are the other name's
        elif entry.kind == "fifo":
            os.mkfifo(path)
        if entry.kind != "link":
            for name, value in entry.xattrs:
                os.setxattr(path, name, value)
            if entry.acl:
                os.setxattr(path, "system.posix_acl_access", ACCESS_ACL)
        modes.append((path, entry))
    # Every directory the entries needed and nobody described is the caller's.
    for dirpath, _, _ in os.walk(root):
        if os.lstat(dirpath).st_uid == 0 and Path(dirpath) != parent:
            os.chown(dirpath, me, me)
    for path, entry in reversed(modes):
        uid = _uid(entry.owner, user)
        os.lchown(path, uid, uid)
        if entry.kind != "link":
            os.chmod(path, entry.mode)
    for path, entry in reversed(modes):
        os.utime(path, ns=(entry.mtime, entry.mtime), follow_symlinks=False)


# -- random areas ------------------------------------------------------------------------


@st.composite
def _entries(draw: st.DrawFn, top: str, others: list[Entry], files: bool = True) -> list[Entry]:
    """A tree under ``top``: directories, files, links, pipes, some linked to ``others``."""
    out: list[Entry] = [
        Entry(
            "dir",
            top,
            mode=draw(st.sampled_from(DIR_MODES[:3])),
            xattrs=draw(st.sampled_from([(), (("user.d", b"dir"),)])),
            owner="me",
            mtime=OLD_TIME + 1,
        )
    ]
    dirs = draw(st.lists(st.sampled_from(DIRS[1:]), max_size=3, unique=True))
    for sub in sorted(dirs):
        if "/" in sub and sub.split("/")[0] not in dirs:
            continue
        out.append(
            Entry(
                "dir",
                f"{top}/{sub}",
                mode=draw(st.sampled_from(DIR_MODES)),
                xattrs=draw(st.sampled_from([(), (("user.d", b"sub"),)])),
                acl=draw(st.booleans()),
                owner=draw(st.sampled_from(["me", "me", "me", "root"])),
                mtime=OLD_TIME + draw(st.integers(0, 9)) * 10**9,
            )
        )
    places = ["", *[d for d in dirs if not ("/" in d and d.split("/")[0] not in dirs)]]
    taken = {e.path for e in out}
    count = draw(st.integers(0 if not files else 1, 7))
    made: list[Entry] = []
    for _ in range(count):
        where = draw(st.sampled_from(places))
        name = draw(st.sampled_from(NAMES))
        path = f"{top}/{where}/{name}" if where else f"{top}/{name}"
        if path in taken:
            continue
        taken.add(path)
        kind = draw(st.sampled_from(["file", "file", "file", "file", "link", "link", "hard", "fifo"]))
        plain = [e for e in [*made, *others] if e.kind == "file"]
        if kind == "hard" and not plain:
            kind = "file"
        if kind == "file":
            entry = Entry(
                "file",
                path,
                data=draw(st.integers(0, len(DATA) - 1)),
                mode=draw(st.sampled_from(MODES)),
                xattrs=draw(
                    st.sampled_from([(), (("user.k", b"v"),), (("user.k", b""), ("user.z", b"z" * 100))])
                ),
                acl=draw(st.booleans()),
                owner=draw(st.sampled_from(["me", "me", "me", "root", "other"])),
                mtime=OLD_TIME + draw(st.integers(0, 9)) * 10**9,
            )
        elif kind == "hard":
            entry = Entry("hard", path, target=draw(st.sampled_from(plain)).path)
        elif kind == "link":
            depth = path.count("/")
            up = "../" * depth
            # Not to itself or a directory above it: shutil would recurse
            # through it until the path is too long.
            candidates = [
                f"{up}{e.path}" for e in [*made, *out, *others] if not (path + "/").startswith(e.path + "/")
            ]
            text = draw(st.sampled_from([*candidates, f"{up}missing", "/dev/null"]))
            entry = Entry("link", path, target=text, owner="me", mtime=OLD_TIME + 3)
        else:
            entry = Entry("fifo", path, mode=0o644, mtime=OLD_TIME + 4)
        made.append(entry)
    return out + made


def _reaches_device(entries: list[Entry], path: str) -> bool:
    """Whether following ``path`` (through links to links) ends at /dev/null."""
    links = {e.path: e for e in entries if e.kind == "link"}
    for _ in range(10):
        entry = links.get(path)
        if entry is None:
            return False
        if entry.target == "/dev/null":
            return True
        path = os.path.normpath(os.path.join(os.path.dirname(path), entry.target))
    return False


def _has_device_link(entries: list[Entry]) -> bool:
    return any(_reaches_device(entries, e.path) for e in entries)


@st.composite
def tree_scenarios(draw: st.DrawFn) -> Scenario:
    user = draw(st.sampled_from(["root", "nobody"]))
    source = draw(_entries("src", []))
    if draw(st.booleans()):
        # Enough files for copytree's thread pool (it starts at 16).
        where = draw(st.sampled_from([e.path for e in source if e.kind == "dir"]))
        source += [Entry("file", f"{where}/bulk{i:02d}", data=i % 2, mode=0o640) for i in range(20)]
    dirs_exist_ok = draw(st.booleans())
    setgid_parent = draw(st.booleans())
    dst = "g/dst" if setgid_parent else "dst"
    existing: list[Entry] = []
    if dirs_exist_ok and draw(st.booleans()):
        existing = draw(_entries(dst, source, files=True))
    symlinks = draw(st.booleans())
    if not symlinks and _has_device_link(source):
        # A symlink to a character device copied as a file: cowpath raises
        # SpecialFileError where shutil copies the device's data (listed
        # in docs/migrating.md).
        symlinks = True
    copy_function = draw(
        st.sampled_from(["default", "default", "copy", "copyfile", "shutil.copy2", "raising"])
    )
    ignore = draw(st.sampled_from(["none", "none", "names", "raising"]))
    return Scenario(
        kind=draw(st.sampled_from(KINDS)),
        user=user,
        entries=source + existing,
        call="copytree",
        args={
            "symlinks": symlinks,
            "dirs_exist_ok": dirs_exist_ok,
            "ignore_dangling_symlinks": draw(st.booleans()),
            "copy_function": copy_function,
            "ignore": ignore,
            "ignored": draw(st.sampled_from(NAMES)),
            "raise_at": draw(st.integers(1, 4)),
            "workers": draw(st.sampled_from([None, 1, 3])),
        },
        dst=dst,
        path_type=draw(st.sampled_from(["str", "str", "bytes", "Path", "mixed"])),
        fsize=draw(st.sampled_from([None, None, LIMIT])),
        setgid_parent=setgid_parent,
        default_acl=draw(st.booleans()),
    )


@st.composite
def file_scenarios(draw: st.DrawFn) -> Scenario:
    user = draw(st.sampled_from(["root", "nobody"]))
    entries = draw(_entries("s", []))
    others = draw(_entries("d", entries, files=True))
    entries += others
    names = [e.path for e in entries]
    files = [e.path for e in entries if e.kind != "dir"]
    follow = draw(st.booleans())
    src = draw(st.sampled_from([*files, *files, *names, "s/missing"]))
    if follow and _reaches_device(entries, src):
        follow = False  # a followed link to a device: the listed difference
    return Scenario(
        kind=draw(st.sampled_from(KINDS)),
        user=user,
        entries=entries,
        call=draw(st.sampled_from(["copyfile", "copy", "copy2"])),
        args={"follow_symlinks": follow},
        src=src,
        dst=draw(st.sampled_from([*files, *files, *names, "d/new", "new", "new", "missing/x", "d"])),
        path_type=draw(st.sampled_from(["str", "str", "bytes", "Path", "mixed"])),
        fsize=draw(st.sampled_from([None, None, LIMIT])),
        default_acl=draw(st.booleans()),
    )


# -- running a scenario ----------------------------------------------------------------


class Raised(RuntimeError):
    pass


def _path(root: Path, rel: str, path_type: str) -> Any:
    full = root / rel
    if path_type == "bytes":
        return os.fsencode(str(full))
    if path_type == "Path":
        return full
    return str(full)


def _action(scenario: Scenario) -> Any:
    def action(m: Any, root: Path) -> Any:
        # "mixed": a str source and a bytes destination.
        src = _path(root, scenario.src, "str" if scenario.path_type == "mixed" else scenario.path_type)
        dst = _path(root, scenario.dst, "bytes" if scenario.path_type == "mixed" else scenario.path_type)
        if scenario.call != "copytree":
            return getattr(m, scenario.call)(src, dst, **scenario.args)
        args = dict(scenario.args)
        kwargs: dict[str, Any] = {
            "symlinks": args["symlinks"],
            "dirs_exist_ok": args["dirs_exist_ok"],
            "ignore_dangling_symlinks": args["ignore_dangling_symlinks"],
        }
        calls = [0]
        function = args["copy_function"]
        if function == "copy":
            kwargs["copy_function"] = m.copy
        elif function == "copyfile":
            kwargs["copy_function"] = m.copyfile
        elif function == "shutil.copy2":
            kwargs["copy_function"] = shutil.copy2
        elif function == "raising":

            def raising(s: Any, d: Any) -> Any:
                calls[0] += 1
                if calls[0] == args["raise_at"]:
                    raise Raised(f"copy number {calls[0]}")
                return m.copy2(s, d)

            kwargs["copy_function"] = raising
        if args["ignore"] != "none":
            seen = [0]

            def ignore(directory: Any, names: list[Any]) -> list[Any]:
                seen[0] += 1
                if args["ignore"] == "raising" and seen[0] == args["raise_at"]:
                    raise Raised(f"ignore call {seen[0]}")
                return [n for n in names if os.fsdecode(n) == args["ignored"]]

            kwargs["ignore"] = ignore
        if m is cowpath:
            kwargs["workers"] = args["workers"]
        return m.copytree(src, dst, **kwargs)

    return action


def _run(areas: Areas, scenario: Scenario) -> None:
    base = areas.fresh(scenario.kind)
    try:
        _compare(base, scenario)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _compare(base: Path, scenario: Scenario) -> None:
    before: dict[str, Any] = {}
    outcomes, states = run_both(
        base,
        lambda root: _build(root, scenario),
        _action(scenario),
        user=NOBODY if scenario.user == "nobody" else None,
        fsize=scenario.fsize,
        before=before,
    )
    assert before["cowpath"] == before["shutil"]
    assert outcomes["cowpath"] == outcomes["shutil"], report({}, outcomes)
    result = outcomes["shutil"]
    kind = result[1].__name__ if result[0] == "raised" else ""
    event(f"{scenario.call} as {scenario.user}: {result[0]} {kind}")
    differing = diff(states["cowpath"], states["shutil"])
    failed = _failed(result, before["shutil"], set(differing))
    unexplained = {
        name: pair
        for name, pair in differing.items()
        if not _allowed(name, pair, before["shutil"], scenario, result[0] == "raised", failed)
    }
    assert unexplained == {}, report(unexplained, outcomes)


def _allowed(
    name: bytes,
    pair: tuple[Any, Any],
    before: dict[bytes, Any],
    scenario: Scenario,
    raised: bool,
    failed: set[bytes],
) -> bool:
    """Whether cowpath's entry differs from shutil's only as docs/migrating.md says it may.

    - A write that failed part-way (here: past the file size limit) leaves
      shutil a partial file; cowpath leaves no new file (and so does not
      change its directory's mtime), and an existing one as it was when the
      failure came before its data was discarded.
    - cowpath narrows the mode of an existing file it copies onto (copy,
      copy2) before writing: if that copy fails, the mode stays narrowed,
      where shutil's copymode never came.
    - cowpath narrows each new directory of a new tree (copytree with its
      own copy or copy2) until copystat sets its mode: a copytree ended by
      an exception leaves the unfinished ones narrowed.
    """
    ours, theirs = pair
    partial = theirs is not None and scenario.fsize is not None and _partial(theirs, scenario.fsize)
    if scenario.fsize is not None and theirs is not None and ours == before.get(name):
        if partial:
            return True
        if ours is not None and ours[:5] == theirs[:5] and stat.S_ISDIR(int(ours[0], 8)):
            return True  # a directory where shutil left a partial file
    if not raised or ours is None or theirs is None:
        return False
    mode, wider = int(ours[0], 8), int(theirs[0], 8)
    # A chmod also sets an access ACL's mask entry (acl(5)), which XFS shows
    # as trusted.SGI_ACL_FILE too: that follows the mode.
    if mode | wider != wider or _without_acl(ours[1:]) != _without_acl(theirs[1:]):
        return False
    if stat.S_ISDIR(mode):
        args = scenario.args
        return (
            scenario.call == "copytree"
            and not args["dirs_exist_ok"]
            and args["copy_function"] in ("default", "copy")
        )
    return scenario.call != "copyfile" and (name in failed or partial)


def _failed(result: tuple[Any, ...], before: dict[bytes, Any], names: set[bytes]) -> set[bytes]:
    """The names the outcome mentions, and the files the symlinks among them lead to."""
    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, (str, bytes)):
            texts.append(os.fsdecode(value))
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(result)
    blob = "\n".join(texts)
    found = set()
    for name in names | set(before):
        full = "ROOT/" + os.fsdecode(name)
        # Raw in a file name; as repr shows it inside a message.
        if full in blob or repr(full)[1:-1] in blob:
            found.add(name)
    for mentioned in list(found):
        path = mentioned
        for _ in range(10):
            if path not in before or not before[path][0].startswith("0o12"):
                break
            path = os.path.normpath(os.path.join(os.path.dirname(path), before[path][3]))
            found.add(path)
    return found


def _without_acl(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    uid, gid, body, xattrs, *rest = fields
    kept = tuple(x for x in xattrs if x[0] not in ("system.posix_acl_access", "trusted.SGI_ACL_FILE"))
    return (uid, gid, body, kept, *rest)


def _partial(entry: tuple[Any, ...], limit: int) -> bool:
    """A regular file holding the first ``limit`` bytes of a longer source."""
    body = entry[3]
    return (
        stat.S_ISREG(int(entry[0], 8))
        and isinstance(body, bytes)
        and len(body) == limit
        and any(len(data) > limit and data.startswith(body) for data in DATA)
    )


# -- the properties ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def areas() -> Iterator[Areas]:
    yield from areas_fixture()


@SETTINGS
@given(scenario=tree_scenarios())
def test_copytree_parity(areas: Areas, scenario: Scenario) -> None:
    _run(areas, scenario)


@SETTINGS
@given(scenario=file_scenarios())
def test_copy_functions_parity(areas: Areas, scenario: Scenario) -> None:
    _run(areas, scenario)
