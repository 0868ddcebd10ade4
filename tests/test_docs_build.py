"""The documentation site builds with ``mkdocs build --strict``, without a single warning.

Strict mode turns warnings into errors: a page missing from the nav, a broken
link or anchor, a snippet that cannot be included, a docstring that
mkdocstrings cannot render. The API reference is generated from the cowpath
that this suite tests (the source tree, or the installed wheel).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("mkdocs", reason="the docs tools are in the test extra: pip install -e '.[test]'")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", NO_COLOR="1")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    done = subprocess.run(
        [*command, "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT,  # the changelog snippet is included relative to the project root
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = _ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, log
    return site, log


def test_strict_build_has_no_warnings(built: tuple[Path, str]) -> None:
    _, log = built
    problems = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not problems, log


@pytest.mark.parametrize(
    "page",
    [
        "index.html",
        "installation/index.html",
        "migrating/index.html",
        "cowpath/index.html",
        "cli/index.html",
        "platforms/index.html",
        "platforms/linux/index.html",
        "platforms/macos/index.html",
        "platforms/windows/index.html",
        "performance/index.html",
        "reliability/index.html",
        "faq/index.html",
        "api/index.html",
        "changelog/index.html",
    ],
)
def test_page_is_built(built: tuple[Path, str], page: str) -> None:
    site, _ = built
    assert (site / page).is_file(), f"{page} missing from the site"


def test_api_reference_documents_every_public_name(built: tuple[Path, str]) -> None:
    import cowpath

    site, _ = built
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    shutil_names = {"Error", "SameFileError", "SpecialFileError"}  # shutil's, described in prose
    for name in sorted(set(cowpath.__all__) - shutil_names):
        assert f'id="cowpath.{name}"' in html, f"cowpath.{name} has no entry in the API reference"
    for name in sorted(shutil_names):
        assert f"cowpath.{name}" in html
    # The docstrings' Sphinx roles are rendered as links, not left raw.
    assert ":func:" not in html
    assert ":class:" not in html


def test_changelog_is_included(built: tuple[Path, str]) -> None:
    site, _ = built
    html = (site / "changelog" / "index.html").read_text(encoding="utf-8")
    assert "Unreleased" in html
    assert "--8&lt;--" not in html
    assert "--8<--" not in html


def test_api_reference_documents_every_field_and_no_private_name(built: tuple[Path, str]) -> None:
    import dataclasses

    import cowpath

    site, _ = built
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    for cls in (cowpath.CopyReport, cowpath.TreeProgress, cowpath.DedupeReport):
        for field in dataclasses.fields(cls):
            if field.name.startswith("_"):
                continue
            assert f'id="cowpath.{cls.__name__}.{field.name}"' in html, f"{cls.__name__}.{field.name}"
    # Names internal to cowpath: the methods cowpath calls to count, and private aliases.
    for private in ("record", "record_renamed", "record_differing"):
        assert f'.{private}"' not in html, private
    text = re.sub(r"<[^>]+>", "", html)
    for alias in ("_P", "_Target", "_ConcretePath", "_lock"):
        assert not re.search(rf"\b{alias}\b", text), alias
    # CowPath's pathlib base is explained in prose, not shown as "Bases: PosixPath".
    assert "Bases: " not in text.split("cowpath.CowPath", 1)[1].split("cowpath.CopyReport", 1)[0]


def test_api_signatures_are_formatted(built: tuple[Path, str]) -> None:
    # mkdocstrings formats a long signature over several lines only when ruff
    # (or black) is importable: the docs extra must bring it.
    site, _ = built
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    signature = html.split('id="cowpath.copytree"', 1)[1].split("</code></pre>", 1)[0]
    text = re.sub(r"<[^>]+>", "", signature)
    assert text.count("\n") >= 10, text


def test_the_docs_extra_builds_the_same_site_as_the_test_extra() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("ruff") for req in extras["docs"])
    assert set(extras["docs"]) <= set(extras["test"]), set(extras["docs"]) - set(extras["test"])
