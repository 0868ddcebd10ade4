"""What every ``cowpath`` subcommand shares: messages, sizes, reasons, output streams and the progress bar."""

from __future__ import annotations

import codecs
import importlib
import io
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pool import TreeProgress

__all__ = ["PROG", "Bar", "OutputClosed", "human_size", "name_safe_output", "say", "tell", "why"]

PROG = "cowpath"

# The error handler of stdout and stderr while the command runs (see name_safe_output).
_NAMES_HANDLER = "cowpath.names"


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


class OutputClosed(Exception):
    """Whoever read stdout has gone (``cowpath cp -v ... | head``): the command stops.

    Not an OSError: raised inside a copy function, a BrokenPipeError would
    be taken for that file's failure and the copy would go on.
    """


def tell(line: str) -> None:
    """Print ``line`` on stdout; :class:`OutputClosed` once nobody reads it."""
    try:
        print(line)
    except BrokenPipeError:
        raise OutputClosed from None


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _encode_names(exc: UnicodeError) -> tuple[bytes, int]:
    """Write a file name's undecodable bytes as they are, anything else unencodable escaped.

    Python decodes a name that is not valid in the file system encoding
    (for instance Latin-1 bytes under a UTF-8 locale) with surrogateescape:
    each bad byte becomes a lone surrogate U+DC80..U+DCFF, which stdout's
    strict encoder refuses. Writing the byte back gives the name exactly
    as it is on disk (as ls does into a pipe); a character the stream's
    encoding lacks is escaped as backslashreplace would.
    """
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(code - 0xDC00)
        else:
            out += char.encode("ascii", "backslashreplace")
    return bytes(out), exc.end


codecs.register_error(_NAMES_HANDLER, _encode_names)


def name_safe_output() -> None:
    """Make printing any file name safe on stdout and stderr (see :func:`_encode_names`)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=_NAMES_HANDLER)


def percent_safe(done: int, total: int, files_done: int, files_total: int) -> int:
    """``done``, held below what reads as 100% (tqdm rounds 99.5% up) until the last file is done."""
    if files_done >= files_total or total <= 0:
        return done
    return min(done, (199 * total - 1) // 200)


def _refused(exc: Exception) -> None:
    # tqdm reads defaults from $TQDM_* variables (when imported and when a
    # bar is made) and raises on a value it cannot convert.
    say(f"no progress bar: tqdm refused a setting ($TQDM_...): {exc}")


class Bar:
    """A progress bar from tqdm when it is installed (``pip install 'cowpath[cli]'``).

    While the walk is still listing the tree, its totals grow: the bar then
    shows bytes and files done without a total or a percentage, and gets
    its total once the totals are final. It never reads 100% before the
    last file is done.
    """

    def __init__(self, enabled: bool, asked: bool = False) -> None:
        self.bar: Any = None
        self.tqdm: Any = None
        if not enabled:
            return
        try:
            self.tqdm = importlib.import_module("tqdm").tqdm
        except ImportError:
            if asked:
                say("--progress: the bar needs tqdm, which is not installed (pip install 'cowpath[cli]')")
        except (TypeError, ValueError) as exc:
            _refused(exc)

    def update(self, progress: TreeProgress) -> None:
        if self.tqdm is None:
            return
        if self.bar is None:
            # Made at the first file of a tree: a single file, or an error
            # before any file, shows no bar.
            try:
                self.bar = self.tqdm(total=None, unit="B", unit_scale=True, leave=False, file=sys.stderr)
            except (TypeError, ValueError) as exc:
                _refused(exc)
                self.tqdm = None
                return
        bar = self.bar
        if progress.scanning:
            total = None
            files = f"{progress.files_done}/{progress.files_total}+ files"
        else:
            total = progress.bytes_total
            files = f"{progress.files_done}/{progress.files_total} files"
        if bar.total != total:
            bar.total = total
        bar.set_postfix_str(files, refresh=False)
        done = progress.bytes_done
        if total is not None:
            done = percent_safe(done, total, progress.files_done, progress.files_total)
        bar.update(done - bar.n)

    def close(self) -> None:
        """Take the bar off the screen (before a message); the next tree gets a new one."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
