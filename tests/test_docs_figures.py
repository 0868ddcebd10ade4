"""Every performance figure in the docs and the README comes from docs/data/benchmark.json.

Two checks:

- every page that holds generated text (tables between markers, inline
  ``<!-- fig:NAME -->...<!-- /fig -->`` figures) is exactly what
  ``bench.docs`` makes of the tracked results file: a figure edited by
  hand, or results updated without regenerating the pages, fails;
- no performance figure is typed into prose: outside code, HTML comments
  and generated text, a number with a unit of time or a ratio (``ms``,
  ``s``, the multiplication sign), or a size or percentage (``MiB``, ``GiB``, ``%``) in a
  sentence about speed, memory or space, fails, unless it is one of the
  design constants listed in ``CONSTANTS`` (a chunk size, a test threshold),
  which describe what the code does, not what a run measured.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import dedupe, docs, move, report

ROOT = Path(__file__).resolve().parent.parent
PROSE = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("**/*.md"))]

NUMBER = r"\d[\d,]*(?:\.\d+)?"
TIMES = "\u00d7"  # the multiplication sign, escaped for the linter
DASH = "\u2013"
FIGURE = re.compile(
    rf"(?<![\w.\-/])(?:~|about |under |over |within )?{NUMBER}(?:\s?(?:{DASH}|-|to)\s?{NUMBER})?\s?"
    rf"(?P<unit>ms|µs|us|ns|s|seconds?|minutes?|min|{TIMES}|x|MiB|GiB|KiB|MB|GB|kB|KB|%)(?![\w])"
)
TIME_OR_RATIO = {"ms", "µs", "us", "ns", "s", "second", "seconds", "minute", "minutes", "min", TIMES, "x"}
PERFORMANCE = re.compile(
    r"fast|slow|speed|time|took|take|cost|grow|grew|memory|RSS|heap|reclaim|sav|bench|measur|median"
    r"|clone[sd]? in|copie[sd] in|per file|throughput|overhead",
    re.IGNORECASE,
)
#: (page, figure as written): what the code or a test is built to do, not a measurement.
CONSTANTS = {
    ("docs/dedupe.md", "1 GiB"): "dedupe compares a large file 1 GiB at a time (cowpath/_dedupe), "
    "and the largest read-ahead window (cowpath/_deduperead)",
    ("docs/dedupe.md", "256 MiB"): "the smallest read-ahead window of dedupe",
    (
        "docs/dedupe.md",
        "1 MiB",
    ): "dedupe reads files up to this size whole (cowpath/_deduperead.WHOLE_SAMPLE)",
    ("docs/dedupe.md", "4 KiB"): "the kernel's page-by-page read",
    ("docs/index.md", "30 seconds"): "a heading: the time to read a section",
    ("docs/reliability.md", "20 seconds"): "the soak test's time budget per filesystem",
    ("docs/reliability.md", "32 MiB"): "the soak test's bound on resident growth",
    ("docs/reliability.md", "4 MiB"): "the soak test's bound on traced growth",
    ("docs/performance.md", f"1{TIMES}"): "how to read a ratio: below 1 is faster",
}


def _without_generated_and_code(text: str) -> str:
    for begin, end in (
        (report.BEGIN, report.END),
        (move.DOCS_BEGIN, move.DOCS_END),
        (dedupe.BEGIN, dedupe.END),
    ):
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), " ", text, flags=re.DOTALL)
    text = docs.FIG.sub(" ", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"^(```|~~~).*?^\1", " ", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", " ", text)


def typed_figures(name: str, text: str) -> list[str]:
    """The performance figures typed into the prose of page ``name``, with their sentence."""
    found = []
    for paragraph in re.split(r"\n\s*\n", _without_generated_and_code(text)):
        for sentence in re.split(r"(?<=[.;:!?])\s+|\n\|", paragraph):
            for match in FIGURE.finditer(sentence):
                if match.group("unit") not in TIME_OR_RATIO and not PERFORMANCE.search(sentence):
                    continue
                bare = re.sub(r"^(~|about |under |over |within )", "", match.group(0))
                if (name, bare) in CONSTANTS:
                    continue
                found.append(f"{name}: {match.group(0)!r} in: {' '.join(sentence.split())[:160]}")
    return found


@pytest.mark.parametrize("page", docs.PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_is_generated_from_the_results_file(page: Path) -> None:
    data = docs.load()
    assert data["copy"] is not None, f"{docs.DATA} has no copy results"
    text = page.read_text()
    assert docs.render(text, data) == text, (
        f"{page.name} differs from what {docs.DATA.relative_to(ROOT)} gives: "
        "run `python -m bench docs`, never edit generated figures by hand"
    )


def test_figures_in_prose_come_from_the_results_file() -> None:
    typed = [
        line for page in PROSE for line in typed_figures(page.relative_to(ROOT).as_posix(), page.read_text())
    ]
    assert not typed, "figures typed by hand (generate them: see bench/docs.py):\n" + "\n".join(typed)


def test_pages_with_figures_are_all_regenerated() -> None:
    # A page with an inline figure that bench.docs does not rewrite would go stale.
    holding = {page for page in PROSE if docs.FIG.search(page.read_text())}
    assert holding <= set(docs.PAGES), sorted(str(p) for p in holding - set(docs.PAGES))


def test_a_figure_typed_into_prose_is_caught() -> None:
    # The check above must be able to fail: hand-typed claims of the kind that went stale,
    # while the same figures generated, or in code, pass.
    typed = "A 1 GiB file clones in 0.1 ms, 2\u00d7 faster than cp; memory grows by 6.5 MiB.\n"
    assert len(typed_figures("docs/faq.md", typed)) == 4
    generated = "A clone took <!-- fig:copy.file.xfs.cowpath.median -->1.55 ms<!-- /fig -->.\n"
    assert typed_figures("docs/faq.md", generated) == []
    assert typed_figures("docs/faq.md", "```console\nreal 0.1 s\n```\n") == []


def test_generated_figures_follow_the_data() -> None:
    data = docs.load()
    text = (
        "<!-- fig:copy.file.xfs.cowpath.median -->typed<!-- /fig --> "
        "<!-- fig:copy.file.zfs.cowpath.median -->x<!-- /fig -->"
    )
    rendered = docs.render(text, data)
    assert "typed" not in rendered
    assert "<!-- fig:copy.file.zfs.cowpath.median -->n/a<!-- /fig -->" in rendered
    with pytest.raises(KeyError):
        docs.figure(data, "copy.file.xfs.cowpath.speed")


@pytest.mark.parametrize("page", docs.PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_line_starts_with_a_figure(page: Path) -> None:
    # Markdown (Python-Markdown and GitHub's alike) reads a line that starts
    # with "<!--" as an HTML block: the paragraph or list item would break there.
    for number, line in enumerate(page.read_text().splitlines(), 1):
        assert not line.lstrip().startswith("<!-- fig:"), f"{page.name}:{number}: {line}"
