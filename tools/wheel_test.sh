#!/usr/bin/env bash
# The release check: build the sdist and the wheel (the wheel from the
# sdist), check them with twine, install the wheel with its test extra in a
# fresh virtual environment, and run the test suite against that installed
# package from a directory outside the source tree. A file missing from the
# wheel, or a test that only passes beside the sources, fails here.
#
#   bash tools/wheel_test.sh                        # with python3
#   PYTHON=.venv-3.12/bin/python bash tools/wheel_test.sh
#   bash tools/wheel_test.sh -k docs                # extra arguments go to pytest
#   JUNIT_XML=report.xml bash tools/wheel_test.sh    # keep pytest's JUnit XML report
#
# PYTHON needs the build and twine modules (both in the test extra). Network
# access to the package index is needed for the build backend and the extra.
# Set KEEP_WHEEL_TEST=1 to keep the temporary directory for inspection.
set -euo pipefail
case "${JUNIT_XML:-}" in
    /* | "") ;;
    *) JUNIT_XML="$PWD/$JUNIT_XML" ;;  # the tests run in another directory
esac
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/cowpath-wheel-test.XXXXXX")
cleanup() {
    if [ "${KEEP_WHEEL_TEST:-}" = 1 ]; then
        echo "wheel_test: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

say() { echo "=== wheel_test: $*"; }
fail() { echo "wheel_test: $*" >&2; exit 1; }

say "building the sdist, then the wheel from it ($("$PY" --version))"
"$PY" -m build --outdir "$work/dist" "$ROOT" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; fail "python -m build failed"; }

shopt -s nullglob
sdists=("$work"/dist/cowpath-*.tar.gz)
wheels=("$work"/dist/cowpath-*.whl)
shopt -u nullglob
[ ${#sdists[@]} = 1 ] || fail "expected one sdist, found: ${sdists[*]:-none}"
[ ${#wheels[@]} = 1 ] || fail "expected one wheel, found: ${wheels[*]:-none}"
wheel=${wheels[0]}
case "$(basename "$wheel")" in
    cowpath-*-py3-none-any.whl) ;;
    *) fail "the wheel is not pure Python (py3-none-any): $(basename "$wheel")" ;;
esac
echo "built $(basename "${sdists[0]}") and $(basename "$wheel")"

say "twine check --strict"
"$PY" -m twine check --strict "$work"/dist/*

say "installing the wheel with its test extra in a fresh virtual environment"
"$PY" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
[ -x "$venv_python" ] || venv_python="$work/venv/Scripts/python.exe"
"$venv_python" -m pip install -q --disable-pip-version-check "$wheel[test]"

# The tests and what they read, copied away from the sources: the docs tests
# build the site and run its examples against the installed package, and
# the benchmark smoke test runs the bench package.
say "copying the tests to $work/run"
mkdir -p "$work/run/tools"
cp -R tests docs bench "$work/run/"
cp README.md CHANGELOG.md mkdocs.yml pyproject.toml "$work/run/"
cp tools/mkdocs_hooks.py "$work/run/tools/"
find "$work/run" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
rm -rf "$work/run/bench/results"
[ ! -e "$work/run/cowpath" ] || fail "the source package was copied into the test directory"

say "pytest against the installed package"
cd "$work/run"
# COWPATH_EXPECT_INSTALLED makes tests/test_installed.py check that cowpath
# comes from the venv's site-packages; the lint tests check a source tree,
# which is not here.
# JUNIT_XML names where the report goes (tools/test.sh reads it); the
# counts from it close this run's output either way.
report=${JUNIT_XML:-$work/junit.xml}
status=0
env -u PYTHONPATH COWPATH_EXPECT_INSTALLED=1 COWPATH_SKIP_LINT=1 \
    "$venv_python" -m pytest -p no:cacheprovider --junitxml="$report" "$@" || status=$?
say "installed wheel: $("$venv_python" "$ROOT/tools/test_counts.py" "$report")"
exit $status
