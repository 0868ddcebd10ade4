"""``python -m bench``: see :mod:`bench.run`.

``python -m bench dedupe`` runs the dedupe case alone (as ``python -m bench
--cases dedupe``, with its own options): see :mod:`bench.dedupe`.
``python -m bench --move`` runs the move case: see :mod:`bench.move`.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["dedupe"]:
    from bench.dedupe import main as dedupe_main

    raise SystemExit(dedupe_main(sys.argv[2:]))

if "--move" in sys.argv[1:]:
    from bench.move import main as move_main

    raise SystemExit(move_main([arg for arg in sys.argv[1:] if arg != "--move"]))

from bench.run import main

raise SystemExit(main())
