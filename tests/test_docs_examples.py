"""Every example in README.md and docs/**/*.md runs, so the docs cannot drift from the code.

Which blocks run
    ```python blocks are executed (``exec``) in a fresh temporary working
    directory; the test fails if one raises. ```console blocks are command
    sessions: each ``$ command`` line is run with bash in a fresh directory
    (``cowpath`` there is the cowpath under test), and everything it prints,
    stdout and stderr together, must match the lines shown after it. Blocks
    in any other language (```sh install instructions, ```text, ...) are
    not run.

Directives: an HTML comment on the line(s) just before a block (invisible
in the rendered page) prepares or qualifies it.

``<!-- setup: ENTRY ... -->``
    What the working directory holds before the block runs. Each ENTRY is

    - ``path/``: a directory (with its parents);
    - ``path``: a small text file (with its parent directories);
    - ``path=SIZE``: a file of SIZE bytes of fixed pseudo-random data;
      SIZE takes a ``K`` or ``M`` suffix (KiB, MiB);
    - ``on=FS``: the working directory is on a loop-mounted filesystem,
      ``btrfs``, ``xfs``, ``ext4`` or ``tmpfs`` (the fixtures of
      ``conftest.py``, so such a block skips where they cannot be mounted,
      unless ``COWPATH_REQUIRE_LOOPFS=1``); an example that must clone says
      ``on=xfs``. Without it the directory is pytest's ``tmp_path``.
    - ``NAME@FS``: a fresh directory on filesystem FS. A relative NAME is a
      symlink to it in the working directory; an absolute NAME (``/scratch``)
      is replaced by that directory's path in the block's text.

    Files are created in the order given.

``<!-- output -->`` before a ```text block
    The block is what the ```python block before it prints (stdout).

``<!-- skip: REASON -->``
    The block is not run; the reason shows in the test report. For examples
    that cannot run here (another OS), never to hide a failure.

Comparing output: absolute paths (``/dev/loop3``, ``/mnt/data``) differ from
machine to machine, so every absolute path, in the shown and in the real
output, is compared as the same placeholder; a line ``...`` in the shown
output stands for any number of lines. Trailing spaces are ignored.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cowpath

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
FILESYSTEMS = ("btrfs", "xfs", "ext4", "tmpfs")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w-]*)")
_DIRECTIVE = re.compile(r"^\s*<!--\s*(?P<name>setup|output|skip)\b:?\s*(?P<value>.*?)\s*-->\s*$")
_SIZE = re.compile(r"^(?P<number>\d+)(?P<unit>[KM]?)$")
_ABSOLUTE_PATH = re.compile(r"(?<![\w./~-])/[^\s,:()'\"]*")


@dataclass
class Block:
    """One fenced block of a Markdown file, with the directives before it."""

    source: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # for python: the ```text block marked <!-- output -->

    @property
    def name(self) -> str:
        return f"{self.source.relative_to(ROOT).as_posix()}:{self.line}"


def parse(source: Path) -> list[Block]:
    """The fenced blocks of ``source``; an output block is attached to its python block."""
    lines = source.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        if directive:
            pending[directive["name"]] = directive["value"]
            i += 1
            continue
        opening = _FENCE.match(line)
        if not opening:
            if line.strip():
                pending = {}  # a directive applies only to the block right after it
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            text = lines[i]
            # A block indented under a list item or admonition loses that indentation.
            body.append(text[indent:] if text[:indent].strip() == "" else text.lstrip())
            i += 1
        block = Block(source, i - len(body), opening["lang"].lower(), "\n".join(body) + "\n", pending)
        pending = {}
        i += 1
        if "output" in block.directives:
            python = next((b for b in reversed(blocks) if b.lang == "python"), None)
            if python is None:
                raise ValueError(f"{block.name}: <!-- output --> without a python block before it")
            python.output = block.text
        else:
            blocks.append(block)
    return blocks


ALL_BLOCKS = [block for source in SOURCES for block in parse(source)]
PYTHON = [block for block in ALL_BLOCKS if block.lang == "python"]
CONSOLE = [block for block in ALL_BLOCKS if block.lang == "console"]


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"bad size {text!r} (a number with an optional K or M suffix)")
    return int(match["number"]) * {"": 1, "K": 1024, "M": 1024 * 1024}[match["unit"]]


def prepare(block: Block, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """The working directory for ``block``, made as its setup says; and the block's text."""
    entries = block.directives.get("setup", "").split()
    where = [entry[3:] for entry in entries if entry.startswith("on=")]
    if where and where[0] not in FILESYSTEMS:
        raise ValueError(f"{block.name}: unknown filesystem {where[0]!r}")
    workdir = Path(request.getfixturevalue(where[0])) if where else tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    renames: dict[str, str] = {}
    for entry in entries:
        if entry.startswith("on="):
            continue
        if "@" in entry:
            name, _, kind = entry.partition("@")
            if kind not in FILESYSTEMS:
                raise ValueError(f"{block.name}: unknown filesystem {kind!r}")
            # Each fixture gives one fresh directory per test; a second name
            # on the same filesystem gets a subdirectory of its own.
            target = Path(request.getfixturevalue(kind)) / name.strip("/").replace("/", "_")
            target.mkdir()
            if name.startswith("/"):
                renames[name] = str(target)
            else:
                (workdir / name).symlink_to(target)
            continue
        if entry.endswith("/"):
            (workdir / entry).mkdir(parents=True, exist_ok=True)
            continue
        name, _, size = entry.partition("=")
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if size:
            path.write_bytes(random.Random(name).randbytes(_size(size)))
        else:
            path.write_text(f"{name}\n", encoding="utf-8")
    return workdir, _rename(block.text, renames)


def _rename(text: str, renames: dict[str, str]) -> str:
    """Each absolute path of ``renames`` replaced, in one pass, where it is a whole path."""
    if not renames:
        return text
    names = "|".join(re.escape(name) for name in sorted(renames, key=len, reverse=True))
    return re.sub(rf"(?<![\w/])(?:{names})(?![\w.-])", lambda match: renames[match[0]], text)


def normalize(text: str) -> list[str]:
    """Lines with every absolute path made the same placeholder and no trailing spaces."""
    return [_ABSOLUTE_PATH.sub("<path>", line).rstrip() for line in text.strip("\n").splitlines()]


def matches(shown: list[str], actual: list[str]) -> bool:
    """Do the real lines match the shown ones (a ``...`` line stands for any lines)?"""
    pattern = "".join(r"(?:.*\n)*?" if line == "..." else re.escape(line) + r"\n" for line in shown)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def _skip_if_asked(block: Block) -> None:
    if "skip" in block.directives:
        pytest.skip(block.directives["skip"] or "marked skip in the docs")


def test_there_are_examples() -> None:
    # A parser that finds nothing would pass every test below by having none.
    assert len(PYTHON) >= 10
    assert len(CONSOLE) >= 3


@pytest.mark.parametrize("block", PYTHON, ids=[block.name for block in PYTHON])
def test_python_example(
    block: Block,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _skip_if_asked(block)
    workdir, text = prepare(block, request, tmp_path)
    monkeypatch.chdir(workdir)
    # An example may set COWPATH_REFLINK; the next one starts without it.
    monkeypatch.delenv("COWPATH_REFLINK", raising=False)
    saved = dict(os.environ)
    try:
        code = compile(text, block.name, "exec")
        exec(code, {"__name__": "__docs__"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    printed = capsys.readouterr().out
    if block.output is not None:
        shown, actual = normalize(block.output), normalize(printed)
        assert matches(shown, actual), f"{block.name} printed:\n{printed}\nthe docs show:\n{block.output}"


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, shown output lines)`` for each ``$ `` line of a console block."""
    session: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        elif session:
            session[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"{block.name}: output before the first '$ ' command")
    return session


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for console examples: ``cowpath`` runs the cowpath under test."""
    bindir = tmp_path_factory.mktemp("bin")
    script = bindir / "cowpath"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cowpath "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("COWPATH_")}
    package_parent = str(Path(cowpath.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    # As a terminal shows it: stdout and stderr interleaved in the order
    # written, and help text wrapped at 80 columns.
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "80"
    env["LC_ALL"] = "C.UTF-8"
    return env


@pytest.mark.skipif(shutil.which("bash") is None or os.name != "posix", reason="console examples use bash")
@pytest.mark.parametrize("block", CONSOLE, ids=[block.name for block in CONSOLE])
def test_console_example(
    block: Block, request: pytest.FixtureRequest, tmp_path: Path, shim: dict[str, str]
) -> None:
    _skip_if_asked(block)
    workdir, text = prepare(block, request, tmp_path)
    block = Block(block.source, block.line, block.lang, text, block.directives)
    for command, shown in _commands(block):
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=workdir,
            env=shim,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        expected, actual = normalize("\n".join(shown)), normalize(done.stdout)
        assert matches(expected, actual), (
            f"{block.name}: `{command}` printed:\n{done.stdout}\nthe docs show:\n" + "\n".join(shown)
        )


def test_normalize_and_match() -> None:
    shown = normalize(".: xfs on /dev/loop0, mounted at /mnt/data\n'/tmp/a' -> 'b/c'\n")
    actual = normalize(".: xfs on /dev/loop3, mounted at /tmp/x-1/mnt-xfs\n'/var/a' -> 'b/c'  \n")
    assert shown == actual == [".: xfs on <path>, mounted at <path>", "'<path>' -> 'b/c'"]
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert normalize("/ (ext4) and a/b") == ["<path> (ext4) and a/b"]
