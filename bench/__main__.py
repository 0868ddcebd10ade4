"""``python -m bench``: see :mod:`bench.run`.

``python -m bench dedupe`` runs the dedupe case alone (as ``python -m bench
--cases dedupe``, with its own options): see :mod:`bench.dedupe`.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["dedupe"]:
    from bench.dedupe import main as dedupe_main

    raise SystemExit(dedupe_main(sys.argv[2:]))

from bench.run import main

raise SystemExit(main())
