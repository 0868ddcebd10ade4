#!/usr/bin/env bash
# The benchmark, from a fresh machine: system packages, a virtual environment
# with the bench extra (matplotlib and the PyPI clone libraries), then
# `python -m bench`, which mounts its own loop filesystems (root needed),
# prints the table and writes bench/results/*.json (ignored by git): a plain
# run leaves every tracked file alone. With --update-docs its results become
# docs/data/benchmark.json, from which every figure in the docs, the README
# and docs/images/benchmark*.png is regenerated.
#
#   sudo bash tools/bench.sh                      # the full run (several minutes)
#   sudo bash tools/bench.sh --update-docs        # the same, and regenerate the docs' figures
#   sudo bash tools/bench.sh --quick              # a smoke run
#   sudo bash tools/bench.sh --cases dedupe       # cowpath dedupe vs jdupes -B and duperemove
#   sudo bash tools/bench.sh --cases tree --filesystems xfs --rounds 9
#   PYTHON=python3.13 sudo -E bash tools/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. tools/system_packages.sh

py=${PYTHON:-python3}
venv=.venv-bench
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
# A clone library that does not build on this Python is reported as
# unavailable in the table instead of stopping the run.
if ! "${pip[@]}" -e ".[bench]"; then
    "${pip[@]}" -e . matplotlib
    for lib in reflink-copy reflink; do
        "${pip[@]}" "$lib" || echo "bench: $lib does not install on $("$venv/bin/python" -V); it will show as unavailable" >&2
    done
fi
exec "$venv/bin/python" -m bench "$@"
