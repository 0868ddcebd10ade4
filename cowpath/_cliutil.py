"""What every ``cowpath`` subcommand shares: messages, sizes, reasons and the progress bar."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ._pool import TreeProgress

__all__ = ["PROG", "Bar", "human_size", "say", "why"]

PROG = "cowpath"


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


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


class Bar:
    """A progress bar from tqdm when it is installed (``pip install cowpath[cli]``)."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        if not enabled:
            return
        try:
            tqdm = importlib.import_module("tqdm").tqdm
        except ImportError:
            return
        self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr)

    def update(self, progress: TreeProgress) -> None:
        if self.bar is None:
            return
        self.bar.total = progress.bytes_total
        self.bar.set_postfix_str(f"{progress.files_done}/{progress.files_total} files", refresh=False)
        self.bar.update(progress.bytes_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
