"""What the code does and what the help, docstrings and docs say about it agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cowpath
from cowpath import _cli
from cowpath._common import REFLINK_MODES
from cowpath._tree import WORKERS_DEFAULT, default_workers

ROOT = Path(__file__).resolve().parent.parent


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_worker_default_is_what_the_code_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stated rule, one per core, at least 2, at most 8, is the computed one."""
    for cores, expected in ((None, 2), (1, 2), (2, 2), (4, 4), (8, 8), (64, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers() == expected
    assert WORKERS_DEFAULT == "one per core, at least 2, at most 8"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(lambda: cowpath.copytree.__doc__ or "", id="copytree-docstring"),
        pytest.param((ROOT / "docs" / "cli.md").read_text, id="docs-cli"),
        pytest.param((ROOT / "docs" / "migrating.md").read_text, id="docs-migrating"),
        pytest.param(
            lambda: (
                subprocess.run(
                    [sys.executable, "-m", "cowpath", "cp", "--help"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            ),
            id="cli-help",
        ),
    ],
)
def test_worker_default_is_stated_the_same_everywhere(text: object) -> None:
    shown = _flat(text())  # type: ignore[operator]
    assert WORKERS_DEFAULT in shown
    assert "cores + 1" not in shown
    assert "cores plus one" not in shown


def test_reflink_modes_are_defined_once() -> None:
    parser = _cli._parser()
    cp = next(a for a in parser._actions if a.dest == "command").choices["cp"]
    reflink = next(a for a in cp._actions if a.dest == "reflink")
    assert tuple(reflink.choices) == REFLINK_MODES
    with pytest.raises(ValueError, match="'auto', 'always', 'never'"):
        cowpath.copyfile(__file__, os.devnull, reflink="sometimes")  # type: ignore[arg-type]


def test_clear_cache_is_public_and_documented() -> None:
    assert "clear_cache" in cowpath.__all__
    assert cowpath.clear_cache is not None
    assert ":func:`clear_cache`" in (cowpath.supports_reflink.__doc__ or "")
    assert "::: cowpath.clear_cache" in (ROOT / "docs" / "api.md").read_text()


def test_backend_name_follows_pyfakefs() -> None:
    """While pyfakefs replaces os, copies take the portable backend, and backend_name says so."""
    patcher = pytest.importorskip("pyfakefs.fake_filesystem_unittest")
    native = cowpath.backend_name()
    with patcher.Patcher():
        assert cowpath.backend_name() == "portable"
    assert cowpath.backend_name() == native
