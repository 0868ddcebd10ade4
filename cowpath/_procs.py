"""Helper processes for large trees: the file copies past the GIL.

Threads copying files hand the GIL back and forth around every system
call (``strace -f`` counts about two ``futex`` calls per file of a tree),
and on a tree of thousands of small files that contention costs system
time cp does not spend. A large tree's files
are therefore copied by helper processes (:mod:`cowpath._worker`), each
driven by one of the pool's threads, which sends it a batch, waits (without
the GIL) for its answer and settles each file in the calling process:
errors, progress, the report and the move's bookkeeping stay where they
are for threads. The walk, the directories, their metadata, the order of
errors and the final move into place stay in the calling thread.

The helpers are fresh interpreters, started through ``subprocess``
(``vfork``/``exec``): a fork of a process that has threads is unsafe.
They start only once the walk has found :data:`MIN_FILES` files: below
that, starting interpreters costs more than it saves, and until they are
ready the threads go on copying themselves. A helper that cannot start, or
dies, leaves its files to the threads.

Helpers are used on Linux only, with the GIL enabled, for cowpath's own
copy functions on the OS backend (not under pyfakefs or a substituted
backend). Everywhere else the threads copy, as they always have.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import subprocess

from ._worker import DECLINED, READY, read_frame, write_frame

__all__ = ["DECLINED", "MIN_FILES", "Helper", "Helpers", "available", "threshold"]

#: The walk starts helpers once it has found this many files (a quarter
#: of it where helpers are forked: they start in about a millisecond, not
#: the tens a fresh interpreter takes).
MIN_FILES = 2000
# Helpers are forked where that is safe; tests turn it off to try fresh interpreters.
FORK = True
# Tests set it: the threads wait for the helpers to start instead of copying meanwhile.
WAIT_FOR_HELPERS = False

_ROOT: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The package this module is part of, whatever sys.path the helper would
# have (-I ignores PYTHONPATH, the user's site and the current directory, -S
# every .pth file), without running its __init__: the helper imports only
# the engine and the backend, and starts in a third of the time.
_BOOT: Final = (
    "import sys, types; package = types.ModuleType('cowpath'); "
    f"package.__path__ = [{os.path.join(_ROOT, 'cowpath')!r}]; sys.modules['cowpath'] = package; "
    "from cowpath._worker import main; main()"
)


def available() -> bool:
    """Whether helper processes can be used here at all."""
    if not sys.platform.startswith("linux") or not sys.executable or getattr(sys, "frozen", False):
        # A frozen application's executable is the application, not Python.
        return False
    gil = getattr(sys, "_is_gil_enabled", None)
    # A free-threaded build: threads do not contend, they are enough.
    return gil is None or bool(gil())


def threshold() -> int:
    """Files a walk must find before helpers start: fewer where they can be forked (ready at once)."""
    return MIN_FILES // 4 if FORK and _one_thread() else MIN_FILES


def _one_thread() -> bool:
    """Whether this process has no thread but the calling one (any thread: Python's or a library's)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class Helper:
    """One helper process and its two pipes.

    Forked where this process has one thread and nothing can hold a lock
    a child would wait on forever: ready at once, with everything imported.
    Otherwise a fresh interpreter, which takes tens of milliseconds to be
    ready.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.dead = False
        self.returncode: int | None = None
        if FORK and _one_thread():
            self._fork()
        else:
            self._spawn()

    def _spawn(self) -> None:
        import subprocess  # only once a tree is large enough to use helpers

        self.process = process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        self.pid = process.pid
        self.to_fd = process.stdin.fileno()
        self.from_fd = process.stdout.fileno()

    def _fork(self) -> None:
        if sys.platform == "win32":  # never: helpers are used on Linux only (available())
            raise OSError("no fork on Windows")
        from ._worker import serve_forked

        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends in os._exit, which coverage never sees
            code = 1
            try:
                os.close(from_parent)
                os.close(to_parent)
                code = serve_forked(to_child, from_child, parent)
            finally:
                os._exit(code)
        os.close(to_child)
        os.close(from_child)
        for fd in (from_parent, to_parent):
            os.set_inheritable(fd, False)
        self.pid = pid
        self.to_fd = from_parent
        self.from_fd = to_parent

    def poll_ready(self, wait: float = 0) -> bool:
        """Whether it is ready for work, waiting up to ``wait`` seconds."""
        if self.ready or self.dead:
            return self.ready
        readable, _, _ = select.select([self.from_fd], [], [], wait)
        if readable:
            try:
                self.ready = read_frame(self.from_fd) == READY
            except Exception:
                self.ready = False
            self.dead = not self.ready
        return self.ready

    def send(self, message: object) -> bool:
        """Send a batch; False if the helper is gone."""
        try:
            write_frame(self.to_fd, message)
        except OSError:
            self.dead = True
        return not self.dead

    def answer(self) -> Any:
        """Wait for the answer to the batch sent; None if the helper is gone."""
        try:
            answer = read_frame(self.from_fd)
        except (OSError, EOFError, ValueError):
            answer = None
        if answer is None:
            self.dead = True
        return answer

    def call(self, message: object) -> Any:
        """Send a batch and wait for its answer; None if the helper is gone."""
        return self.answer() if self.send(message) else None

    def stop(self) -> None:
        """Ask it to stop after the file in hand (it answers for what it did)."""
        if self.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        """End it and wait for it (no zombie); close the pipes.

        Called only once no thread is waiting for its answer: it is idle
        between batches, or still starting, so nothing of a copy is lost by
        killing it, and the copy need not wait for an interpreter to start
        or to shut down.
        """
        process = self.process
        with contextlib.suppress(OSError):
            if process is not None and process.stdin is not None:
                process.stdin.close()
            else:
                os.close(self.to_fd)
        if self.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            if process is not None:
                self.returncode = process.wait()
            else:
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        with contextlib.suppress(OSError):
            if process is not None and process.stdout is not None:
                process.stdout.close()
            else:
                os.close(self.from_fd)


class Helpers:
    """The helpers of one tree copy, each used by one thread at a time."""

    def __init__(self) -> None:
        self.helpers: list[Helper] = []
        self.idle: list[Helper] = []
        self.lock = threading.Lock()
        self.started = False

    def start(self, count: int) -> None:
        """Start ``count`` helpers (from the walking thread, whose end would end them)."""
        self.started = True
        for _ in range(count):
            try:
                helper = Helper()
            except OSError:
                break
            self.helpers.append(helper)
            self.idle.append(helper)

    def take(self) -> Helper | None:
        """A ready helper nobody is using, or None: the thread copies itself."""
        if not self.idle:
            return None
        with self.lock:
            for helper in self.idle:
                if helper.poll_ready(30 if WAIT_FOR_HELPERS else 0):
                    self.idle.remove(helper)
                    return helper
        return None

    def give_back(self, helper: Helper) -> None:
        if not helper.dead:
            with self.lock:
                self.idle.append(helper)

    def stop(self) -> None:
        for helper in self.helpers:
            helper.stop()

    def close(self) -> None:
        """Every helper exited and waited for (no zombie), every pipe closed."""
        helpers, self.helpers, self.idle = self.helpers, [], []
        for helper in helpers:
            helper.close()
