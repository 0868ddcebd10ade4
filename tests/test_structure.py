"""The package's shape: one seam between engine and backends, modules of one idea, no cycles."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import cowpath
from cowpath._backend import Backend
from cowpath._linux import LinuxBackend
from cowpath._macos import MacBackend
from cowpath._portable import PortableBackend
from cowpath._windows import WindowsBackend

# The package under test, wherever it is (a checkout, or the installed wheel).
PACKAGE = Path(cowpath.__file__).resolve().parent
MODULES = sorted(PACKAGE.glob("*.py"))
BACKENDS = [LinuxBackend, MacBackend, WindowsBackend, PortableBackend]
BACKEND_MODULES = ["_linux", "_macos", "_libsystem", "_windows", "_winclone", "_win32", "_portable"]


def _imports(path: Path) -> set[str]:
    """Every cowpath module ``path`` imports, at any level, TYPE_CHECKING blocks included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cowpath."):
            found.add(node.module.split(".")[1])
    return {name for name in found if (PACKAGE / f"{name}.py").exists()}


def test_no_import_cycle_between_the_modules() -> None:
    graph = {path.stem: _imports(path) for path in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                cycle = [*path[path.index(other) :], other]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_is_over_500_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 500


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.__name__)
def test_backends_override_only_the_declared_hooks(backend: type[Backend]) -> None:
    """A backend implements hooks of the contract and private helpers of its own:
    it never replaces a private method it inherits."""
    inherited_private = {
        name
        for name, _ in inspect.getmembers(Backend, inspect.isfunction)
        if name.startswith("_") and not name.startswith("__")
    }
    public = {name for name, _ in inspect.getmembers(Backend, inspect.isfunction) if not name.startswith("_")}
    for name, value in vars(backend).items():
        if not inspect.isfunction(value) or name.startswith("__"):
            continue
        assert name not in inherited_private, f"{backend.__name__} overrides the private {name}"
        if not name.startswith("_"):
            assert name in public, f"{backend.__name__}.{name} is no hook of the contract"


@pytest.mark.parametrize("name", BACKEND_MODULES)
def test_backends_keep_no_per_thread_state(name: str) -> None:
    source = (PACKAGE / f"{name}.py").read_text()
    assert "threading.local" not in source


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_fabricated_stat_results(path: Path) -> None:
    """No fake os.stat_result serves as a marker: the engine says what it means with enums."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr != "stat_result", f"{path.name}:{node.lineno}"
