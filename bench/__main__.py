"""``python -m bench``: see :mod:`bench.run`.

``python -m bench dedupe`` runs the dedupe case alone (as ``python -m bench
--cases dedupe``, with its own options): see :mod:`bench.dedupe`.
``python -m bench --move`` runs the move case: see :mod:`bench.move`.
``python -m bench docs`` regenerates every figure in the docs from
docs/data/benchmark.json, measuring nothing: see :mod:`bench.docs`.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

# An installed cowpath has its modules compiled (pip compiles a wheel's);
# so has the one measured here, whatever PYTHONDONTWRITEBYTECODE says, so
# that a timed ``python -m cowpath`` does not compile its source first.
compileall.compile_dir(Path(__file__).resolve().parent.parent / "cowpath", quiet=1)

if sys.argv[1:2] == ["dedupe"]:
    from bench.dedupe import main as dedupe_main

    raise SystemExit(dedupe_main(sys.argv[2:]))

if sys.argv[1:2] == ["docs"]:
    from bench.docs import main as docs_main

    raise SystemExit(docs_main(sys.argv[2:]))

if "--move" in sys.argv[1:]:
    from bench.move import main as move_main

    raise SystemExit(move_main([arg for arg in sys.argv[1:] if arg != "--move"]))

from bench.run import main  # noqa: E402 - after the compilation above

raise SystemExit(main())
