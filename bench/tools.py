"""The contestants: how each tool is driven over each case, as a user would drive it.

Python tools run in a fresh interpreter per measurement (:mod:`bench.worker`)
so that each starts equal (no warm caches of another tool, its own peak
memory); ``cp`` runs as the command a user would type.

The PyPI clone libraries copy one file; over a tree they are driven the way
their users drive them, as ``shutil.copytree``'s ``copy_function``, followed
by ``shutil.copystat`` so that every tree tool ends with ``copy2``'s metadata,
as ``cp -a``, ``shutil.copytree`` and ``cowpath.copytree`` do.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "BASELINES",
    "CASES",
    "TOOLS",
    "TREE_CASES",
    "Case",
    "Tool",
    "Unavailable",
    "library_versions",
    "resolve",
    "tools_for",
]

Case = Literal["tree", "smalltree", "file"]
CASES: Final[tuple[Case, ...]] = ("tree", "smalltree", "file")
#: The cases that copy a tree.
TREE_CASES: Final[tuple[Case, ...]] = ("tree", "smalltree")

# The FICLONE request number, _IOW(0x94, 9, int): 0x40049409 on x86-64 and
# arm64 (fcntl.FICLONE exists only from Python 3.12).
FICLONE: Final = 0x40049409

Copier = Callable[[str, str], object]


class Unavailable(Exception):
    """The tool cannot run here (library not installed, or no clone on this filesystem)."""


@dataclass(frozen=True)
class Tool:
    key: str
    case: Case
    label: str
    #: The PyPI distribution the tool needs, if any.
    distribution: str | None = None
    #: A command line (source and destination appended) instead of a Python function.
    command: tuple[str, ...] | None = None
    #: Only meaningful where the filesystem clones (the bare ioctl has no fallback).
    clone_only: bool = False


TOOLS: Final[tuple[Tool, ...]] = (
    Tool("cowpath", "tree", "cowpath.copytree"),
    Tool("cowpath-threads", "tree", "cowpath.copytree (threads)"),
    Tool("shutil", "tree", "shutil.copytree"),
    Tool("cp", "tree", "cp -a --reflink=auto", command=("cp", "-a", "--reflink=auto")),
    Tool("reflink-copy", "tree", "reflink-copy (copytree + reflink_or_copy)", distribution="reflink-copy"),
    Tool("reflink", "tree", "reflink (copytree + reflink, copyfile fallback)", distribution="reflink"),
    Tool("floor", "tree", "bare system calls (floor)", clone_only=True),
    Tool("cowpath", "smalltree", "cowpath.copytree"),
    Tool("cowpath-threads", "smalltree", "cowpath.copytree (threads)"),
    Tool("shutil", "smalltree", "shutil.copytree"),
    Tool("cp", "smalltree", "cp -a --reflink=auto", command=("cp", "-a", "--reflink=auto")),
    Tool("cowpath", "file", "cowpath.copyfile"),
    Tool("shutil", "file", "shutil.copyfile"),
    Tool("cp", "file", "cp --reflink=auto", command=("cp", "--reflink=auto")),
    Tool("reflink-copy", "file", "reflink_copy.reflink_or_copy", distribution="reflink-copy"),
    Tool("reflink", "file", "reflink.reflink (copyfile fallback)", distribution="reflink"),
    Tool("ficlone", "file", "FICLONE ioctl (floor)", clone_only=True),
)

#: Per case, the tools each row is compared with. Where clones exist, the
#: floor of the single file is the bare ioctl, and the tree's the same system
#: calls from bare Python loops in parallel processes; on ext4 (no clones)
#: the ratio to shutil is the one that matters.
BASELINES: Final[dict[Case, tuple[str, ...]]] = {
    "tree": ("cp", "shutil", "floor"),
    "smalltree": ("cp", "shutil"),
    "file": ("ficlone", "shutil", "cp"),
}


def tools_for(case: Case) -> list[Tool]:
    return [t for t in TOOLS if t.case == case]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries measured (missing ones are absent)."""
    found = {}
    for name in ("cowpath", "reflink-copy", "reflink", "matplotlib"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _with_stat(copy_data: Copier) -> Copier:
    def copy_function(src: str, dst: str) -> str:
        copy_data(src, dst)
        shutil.copystat(src, dst)
        return dst

    return copy_function


def _import(module: str, distribution: str) -> object:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise Unavailable(f"{distribution} is not installed (pip install -e '.[bench]')") from exc
    except Exception as exc:  # a broken build fails with anything, not only ImportError
        raise Unavailable(f"{distribution} does not import on this Python: {exc}") from exc


def _reflink_copy() -> Copier:
    module = _import("reflink_copy", "reflink-copy")
    copier: Copier = module.reflink_or_copy  # type: ignore[attr-defined]
    return copier


def _reflink_with_fallback() -> Copier:
    # `reflink` only clones: it raises ReflinkImpossibleError (not an
    # OSError) on EOPNOTSUPP/EXDEV and OSError for other refusals, after
    # removing the destination. A user wanting "clone if possible" writes
    # this fallback.
    module = _import("reflink", "reflink")
    clone: Copier = module.reflink  # type: ignore[attr-defined]
    impossible: type[Exception] = module.ReflinkImpossibleError  # type: ignore[attr-defined]

    def copy_data(src: str, dst: str) -> None:
        try:
            clone(src, dst)
        except (impossible, OSError):
            shutil.copyfile(src, dst)

    return copy_data


def _ficlone() -> Copier:
    # fcntl is imported here, before the clock starts, not on the timed path
    # (nor at import: it does not exist on Windows).
    import fcntl

    def clone(src: str, dst: str) -> None:
        src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV):
                    raise Unavailable(f"no clone here ({errno.errorcode[exc.errno]})") from exc
                raise
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    return clone


def _floor_tree() -> Copier:
    """What the tree's system calls alone cost from Python, spread over processes: the floor.

    One forked process per core (cowpath's default number of workers) takes
    every Nth entry of the top directory and makes, for each file, the nine
    system calls cowpath makes (open, fstat, create, FICLONE, utimensat,
    flistxattr, fchmod, two closes) in a bare loop: no checks, no staging,
    no error handling, no fallback to copying, no work shared out as it
    comes. No Python copy can be cheaper; cowpath's distance to it is its
    own overhead.
    """
    import fcntl  # here, before the clock starts

    def _bare_file(src: str, dst: str) -> None:
        # The system calls of cowpath's copy2 of a new file, in its order, and nothing else.
        src_fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        st = os.fstat(src_fd)
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.listxattr(src_fd)
        os.chmod(dst_fd, st.st_mode & 0o7777)
        os.close(dst_fd)
        os.close(src_fd)

    def _bare_entries(entries: list[os.DirEntry[str]], dst: str) -> None:
        for entry in entries:
            target = dst + "/" + entry.name
            if entry.is_dir(follow_symlinks=False):
                _bare_dir(entry.path, target)
            else:
                _bare_file(entry.path, target)

    def _bare_dir(src: str, dst: str) -> None:
        os.mkdir(dst)
        with os.scandir(src) as listing:
            entries = list(listing)
        _bare_entries(entries, dst)
        _dir_stat(src, dst)

    def _dir_stat(src: str, dst: str) -> None:
        st = os.stat(src)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(dst, st.st_mode & 0o7777)

    def copy_tree(src: str, dst: str) -> object:
        count = max(2, min(8, os.cpu_count() or 1))
        os.mkdir(dst)
        with os.scandir(src) as listing:
            entries = list(listing)
        pids = []
        for k in range(count):
            pid = os.fork()
            if pid == 0:  # the child ends in os._exit
                code = 0
                try:
                    _bare_entries(entries[k::count], dst)
                except OSError as exc:
                    code = 3 if exc.errno in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL) else 1
                finally:
                    os._exit(code)
            pids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        if 3 in codes:
            raise Unavailable("no clone here (the bare loop has no fallback to copying)")
        if any(codes):
            raise RuntimeError(f"a bare copy process failed: exit codes {codes}")
        _dir_stat(src, dst)
        return dst

    return copy_tree


def _tree_copier(key: str) -> Copier:
    import cowpath

    if key == "cowpath":
        return cowpath.copytree
    if key == "cowpath-threads":
        # The same copy by the threaded walk alone: no copying directory by
        # directory, no helper process (cowpath._treecopy, cowpath._procs).
        from cowpath import _procs, _treecopy

        _treecopy.BY_DIRECTORY = False
        _procs.MIN_FILES = 1 << 62
        return cowpath.copytree
    if key == "shutil":
        return shutil.copytree
    if key == "floor":
        return _floor_tree()
    per_file = {"reflink-copy": _reflink_copy, "reflink": _reflink_with_fallback}[key]()
    copy_function = _with_stat(per_file)

    def copy_tree(src: str, dst: str) -> object:
        return shutil.copytree(src, dst, copy_function=copy_function)

    return copy_tree


def _cowpath_copyfile() -> Copier:
    import cowpath

    return cowpath.copyfile


_FILE_COPIERS: Final[dict[str, Callable[[], Copier]]] = {
    "cowpath": _cowpath_copyfile,
    "shutil": lambda: shutil.copyfile,
    "reflink-copy": _reflink_copy,
    "reflink": _reflink_with_fallback,
    "ficlone": _ficlone,
}


def resolve(case: Case, key: str) -> Copier:
    """The function that copies ``case``'s source to a new destination with tool ``key``.

    Raises :class:`Unavailable` when the tool's library does not import.
    """
    if case in TREE_CASES:
        return _tree_copier(key)
    return _FILE_COPIERS[key]()
