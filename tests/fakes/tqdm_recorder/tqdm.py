"""A stand-in for tqdm that records what the cowpath command shows, for tests/test_cli_progress.py.

Put this directory first on PYTHONPATH and name a file in
``$COWPATH_TQDM_LOG``: each update and close appends one JSON line with
the bar's total, count, the percentage tqdm would print (``{:3.0f}%``)
and the postfix.
"""

from __future__ import annotations

import json
import os
from typing import Any


class tqdm:
    def __init__(self, total: float | None = None, **options: Any) -> None:
        self.total = total
        self.n = 0.0
        self.postfix = ""
        self.options = options
        self._record("open")

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: float = 1) -> None:
        self.n += n
        self._record("update")

    def close(self) -> None:
        self._record("close")

    def _record(self, event: str) -> None:
        shown = None if not self.total else f"{100 * self.n / self.total:3.0f}".strip()
        line = {"event": event, "total": self.total, "n": self.n, "percent": shown, "postfix": self.postfix}
        with open(os.environ["COWPATH_TQDM_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
