"""``python -m cowpath``: the same as the ``cowpath`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
