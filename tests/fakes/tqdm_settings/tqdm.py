"""tqdm's reading of ``$TQDM_*`` defaults, for tests/test_cli_progress.py.

tqdm (4.66+) converts each ``TQDM_<OPTION>`` variable to the type of the
option's default when it is imported, and raises ValueError on a value it
cannot convert; this stand-in does the same for ``TQDM_MININTERVAL``.
"""

from __future__ import annotations

import os
from typing import Any

MININTERVAL = float(os.environ.get("TQDM_MININTERVAL", "0.1"))


class tqdm:
    def __init__(self, total: float | None = None, **options: Any) -> None:
        self.total = total
        self.n = 0.0

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def update(self, n: float = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass
