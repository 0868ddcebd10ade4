"""A helper process that copies a tree's files for :mod:`cowpath._procs`.

Started as a fresh interpreter (never a fork of the caller, whose other
threads may hold locks), it reads batches of (source, destination) jobs on
its standard input and answers each batch on its standard output with one
outcome per file: copied (with the bytes and the source's stat), declined
(the caller copies that file itself, by cowpath's general path) or the
``OSError`` the copy raised. It copies with :func:`cowpath._engine.copy_new_file`,
the tree's fast path, on the operating system's backend.

It dies with its parent: on Linux the kernel kills it when the thread that
started it ends (``PR_SET_PDEATHSIG``), and between batches it stops at the
end of its input, which the parent's death closes. SIGINT and SIGTERM make
it stop after the file in hand, answer for what it did and exit, so no file
is ever left half-copied by a request to stop.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
from typing import Any, Final

__all__ = ["DECLINED", "FAILED", "FATAL", "TREE", "main", "read_frame", "write_frame"]

# Outcomes of a file not copied.
DECLINED: Final = 1  # the caller copies it by the general path
FAILED: Final = 2  # (FAILED, the OSError)
FATAL: Final = 3  # (FATAL, the exception): ends the whole copy

_HEADER: Final = struct.Struct("<Q")
READY: Final = b"R"
# The first element of a message of directories (cowpath._treecopy).
TREE: Final = "tree"
_PR_SET_PDEATHSIG: Final = 1


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None at the end of input (or if it ends within them)."""
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    """One pickled message from ``fd``; None at the end of input."""
    header = read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = read_exactly(fd, _HEADER.unpack(header)[0])
    if body is None:
        return None
    return pickle.loads(body)


def write_frame(fd: int, message: object) -> None:
    body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    data = memoryview(_HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        # The parent died before the request above was made.
        os._exit(1)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
    except Exception:
        if isinstance(exc, OSError):
            return OSError(exc.errno, exc.strerror, exc.filename, None, exc.filename2)
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# Set by SIGINT or SIGTERM: stop after the file in hand.
_stopping: list[bool] = []


def _stop(signum: int, frame: object) -> None:
    _stopping.append(True)


def serve(fd_in: int, fd_out: int) -> None:
    """Copy batches from ``fd_in`` until it ends, or until asked to stop.

    A batch is ``(mode, metadata, direct, counting, with_stat, jobs)``; its
    answer ``(counts, sizes, stats, others)``: the report's counts (if
    ``counting``), the bytes of each job done, in order (a helper asked to
    stop answers for the first ones only), their sources' identity (if
    ``with_stat``), and ``{index: (DECLINED,) or (FAILED, error) or
    (FATAL, error)}`` for the jobs not copied.
    """
    from ._backend import FileJob
    from ._common import identity_of
    from ._engine import copy_new_file
    from ._report import CopyReport
    from ._select import BACKEND

    write_frame(fd_out, READY)
    while not _stopping:
        message = read_frame(fd_in)
        if message is None:
            return
        if message[0] == TREE:
            write_frame(fd_out, _tree_work(*message[1:]))
            continue
        mode, metadata, direct, counting, with_stat, jobs = message
        report = CopyReport() if counting else None
        sizes: list[int] = []
        stats: list[object] = []
        others: dict[int, tuple[Any, ...]] = {}
        for index, (src, dst) in enumerate(jobs):
            if _stopping:
                break
            job = FileJob(src, dst, mode, metadata, report=report, direct=direct)
            try:
                if not copy_new_file(BACKEND, job):
                    others[index] = (DECLINED,)
            except OSError as exc:
                others[index] = (FAILED, _picklable(exc))
            except Exception as exc:
                others[index] = (FATAL, _picklable(exc))
                sizes.append(0)
                break
            sizes.append(job.nbytes)
            if with_stat:
                stats.append(None if job.src_st is None else identity_of(job.src_st))
        counts = None
        if report is not None:
            counts = (report.files_cloned, report.bytes_cloned, report.files_copied, report.bytes_copied)
        write_frame(fd_out, (counts, sizes, stats, others))


def _stopped() -> bool:
    return bool(_stopping)


def _tree_work(settings: tuple[Any, ...], counting: bool, items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Directories and files of :mod:`cowpath._treecopy`: ``(counts, [answer of each item done])``."""
    from ._dirwork import FAILED, DirAnswer, Settings, copy_directory, copy_files
    from ._report import CopyReport

    how = Settings(*settings)
    report = CopyReport() if counting else None
    answers: list[Any] = []
    for kind, first, second in items:
        if _stopping:
            break
        try:
            if kind == "dir":
                answer: Any = copy_directory(how, first, second, report, _stopped)
                if answer.error is not None:
                    answer = answer._replace(error=_picklable(answer.error))
                outcomes = answer.outcomes
            else:
                answer = outcomes = copy_files(how, first, report, _stopped)
        except Exception as exc:
            # Not an OSError of one entry: it ends the whole copy, as in shutil.
            answers.append((FATAL, _picklable(exc)))
            break
        for place, outcome in enumerate(outcomes):
            if outcome[0] == FAILED:
                outcomes[place] = (*outcome[:3], _picklable(outcome[3]), outcome[4])
        answers.append(answer if isinstance(answer, DirAnswer) else list(answer))
    counts = None
    if report is not None:
        counts = (report.files_cloned, report.bytes_cloned, report.files_copied, report.bytes_copied)
    return counts, answers


def _prepare(parent: int) -> None:
    _die_with_parent(parent)
    # SIGINT stays ignored where the caller ignores it.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)


def serve_forked(fd_in: int, fd_out: int, parent: int) -> int:
    """A forked helper's whole life; returns its exit status (the caller ends in ``os._exit``).

    Only the calling thread exists in the child (the parent had no other),
    so no lock can be held by a thread that is not there.
    """
    _stopping.clear()
    _prepare(parent)
    with contextlib.suppress(OSError):  # the parent is gone
        serve(fd_in, fd_out)
    return 0


def main() -> None:
    _prepare(int(sys.argv[1]))
    with contextlib.suppress(BrokenPipeError):  # the parent is gone
        serve(0, 1)


if __name__ == "__main__":
    main()
