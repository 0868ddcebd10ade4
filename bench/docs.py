"""Every benchmark figure in the docs and the README, generated from one tracked file.

``docs/data/benchmark.json`` holds the last full run of each part of the
benchmark, as the runs write them to ``bench/results/``::

    {"copy": <latest-full.json>, "move": <latest-move.json>, "dedupe": <dedupe-latest.json>}

A run writes it only when asked (``python -m bench --update-docs``, and the
same option of ``--move`` and ``dedupe``); ``python -m bench docs``
regenerates the pages and the chart from it, measuring nothing. A plain run
leaves every tracked file alone.

Two kinds of generated text live in the pages:

- blocks between markers (``<!-- benchmark:begin ... -->`` ...
  ``<!-- benchmark:end -->``, and the move and dedupe blocks): whole tables;
- inline figures, ``<!-- fig:NAME -->1.55 ms<!-- /fig -->``: the comment
  is invisible on GitHub and on the site; the text between is rewritten
  from the data. NAME is dotted: ``copy.CASE.FS.TOOL.FIELD``,
  ``move.SETUP.CASE.TOOL.FIELD``, ``dedupe.FS.TOOL.FIELD`` or
  ``copy.meta.KEY``; a row absent from the data gives ``n/a``, so that
  runs that add or drop tools and cases render all the same.

``tests/test_docs_figures.py`` fails when a page differs from what this
module makes of the data, or when a figure in prose is outside these spans.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from bench import report

__all__ = [
    "DATA",
    "PAGES",
    "figure",
    "load",
    "main",
    "render",
    "render_pages",
    "save",
]

ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "docs" / "data" / "benchmark.json"
CHART: Final = ROOT / "docs" / "images" / "benchmark.png"
CHART_DARK: Final = ROOT / "docs" / "images" / "benchmark-dark.png"
#: Every page that holds generated figures.
PAGES: Final = (
    ROOT / "README.md",
    ROOT / "docs" / "index.md",
    ROOT / "docs" / "performance.md",
    ROOT / "docs" / "dedupe.md",
    ROOT / "docs" / "platforms" / "linux.md",
)
SECTIONS: Final = ("copy", "move", "dedupe")
MIB: Final = 1024 * 1024
NA: Final = "n/a"

FIG: Final = re.compile(r"<!-- fig:([\w.\-]+) -->(.*?)<!-- /fig -->", re.DOTALL)


def load(path: Path = DATA) -> dict[str, Any]:
    """The tracked results: an empty section for each part never run."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    for section in SECTIONS:
        data.setdefault(section, None)
    return data


def save(section: str, results: dict[str, Any], path: Path = DATA) -> None:
    """Replace one section of the tracked results with a run's results."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")
    data = load(path)
    data[section] = results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


# -- inline figures -----------------------------------------------------------


def _mib(value: float | None, digits: int = 1) -> str:
    return NA if value is None else f"{value / MIB:,.{digits}f} MiB"


def _source(rows: list[dict[str, Any]], parts: list[str]) -> str:
    """The workload: ``source.file.size`` (``1 GiB``), ``source.tree.files`` (``10,000``)."""
    if parts not in (["file", "size"], ["tree", "files"], ["tree", "size"]):
        raise KeyError(".".join(["source", *parts]))
    source = next((r["source"] for r in rows if r["case"] == parts[0] and "source" in r), None)
    if source is None:
        return NA
    if parts[1] == "files":
        return f"{source['files']:,}"
    size = source["bytes"]
    return f"{size / (1024 * MIB):g} GiB" if size >= 1024 * MIB else f"{size / MIB:,.0f} MiB"


def _spread(rows: list[dict[str, Any]], parts: list[str]) -> str:
    """How far apart the rounds of one tool are: (slowest - fastest) / median, over the rows."""
    spreads = sorted(
        (max(r["times"]) - min(r["times"])) / r["median_s"]
        for r in rows
        if len(r.get("times") or ()) > 1 and r.get("median_s")
    )
    if parts not in (["median"], ["max"]):
        raise KeyError(".".join(["spread", *parts]))
    if not spreads:
        return NA
    value = spreads[-1] if parts == ["max"] else spreads[len(spreads) // 2]
    return f"{100 * value:.0f}%"


def _copy_figure(copy: dict[str, Any], parts: list[str]) -> str:
    if parts[0] == "meta":
        value = copy["meta"].get(parts[1])
        return NA if value is None else str(value)
    if parts[0] == "source":
        return _source(copy["results"], parts[1:])
    if parts[0] == "spread":
        return _spread(copy["results"], parts[1:])
    if len(parts) != 4:
        raise KeyError(".".join(parts))
    case, fs, tool, field = parts
    row = next((r for r in copy["results"] if (r["case"], r["fs"], r["tool"]) == (case, fs, tool)), None)
    formats: dict[str, Callable[[dict[str, Any]], str]] = {
        "median": lambda r: report.seconds(r.get("median_s")),
        "again": lambda r: report.seconds(r.get("again_s")),
        "again_sync": lambda r: report.seconds(r.get("again_sync_s")),
        "space": lambda r: _mib(r.get("space_bytes")),
        "rss_growth": lambda r: NA if r.get("rss_growth_kib") is None else _mib(r["rss_growth_kib"] * 1024),
        "heap": lambda r: NA if r.get("tracemalloc_peak") is None else _mib(r["tracemalloc_peak"], 2),
    }
    if field.startswith("ratio-"):
        base = field.removeprefix("ratio-")
        return NA if row is None else report.ratio(row.get("ratios", {}).get(base))
    if field not in formats:
        raise KeyError(".".join(parts))
    return NA if row is None or row.get("median_s") is None else formats[field](row)


def _move_figure(move: dict[str, Any], parts: list[str]) -> str:
    setup, case, tool, field = parts
    rows = move["results"]
    row = next((r for r in rows if (r["setup"], r["case"], r["tool"]) == (setup, case, tool)), None)
    mine = next((r for r in rows if (r["setup"], r["case"], r["tool"]) == (setup, case, "cowpath")), None)
    if field not in ("median", "call", "space", "ratio"):
        raise KeyError(".".join(parts))
    if row is None:
        return NA
    if field == "median":
        return report.seconds(row["median_s"])
    if field == "call":
        return report.seconds(row.get("call_median_s"))
    if field == "space":
        return NA if row.get("space_bytes") is None else f"{row['space_bytes'] / MIB:+.1f} MiB"
    return NA if mine is None else report.ratio(mine["median_s"] / row["median_s"])


def _dedupe_figure(dedupe: dict[str, Any], parts: list[str]) -> str:
    fs, tool, field = parts
    rows = dedupe["rows"]
    row = next((r for r in rows if r["filesystem"] == fs and r["tool"].split()[0] == tool), None)
    if field not in ("seconds", "reclaimed", "share"):
        raise KeyError(".".join(parts))
    if row is None:
        return NA
    if field == "seconds":
        return report.seconds(row["seconds"])
    if field == "reclaimed":
        return _mib(row["reclaimed_bytes"])
    base = next((r for r in rows if r["filesystem"] == fs and r["tool"].startswith("jdupes")), None)
    if base is None or not base["reclaimed_bytes"]:
        return NA
    return f"{100 * row['reclaimed_bytes'] / base['reclaimed_bytes']:.1f}%"


def figure(data: dict[str, Any], name: str) -> str:
    """The text of the inline figure ``name`` (``n/a`` where the run has no such row).

    Raises :class:`KeyError` for a name no data could ever answer (a typo).
    """
    section, *parts = name.split(".")
    handlers: dict[str, Callable[[dict[str, Any], list[str]], str]] = {
        "copy": _copy_figure,
        "move": _move_figure,
        "dedupe": _dedupe_figure,
    }
    if section not in handlers or not parts:
        raise KeyError(name)
    results = data.get(section)
    if results is None:
        return NA
    return handlers[section](results, parts)


# -- blocks -------------------------------------------------------------------


def _blocks(data: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(begin marker, end marker, generated text or None for "leave as is")."""
    from bench import dedupe, move

    copy = None if data["copy"] is None else report.markdown(data["copy"])
    moved = None if data["move"] is None else move.section(data["move"])
    deduped = None if data["dedupe"] is None else dedupe.section(data["dedupe"])
    return [
        (report.BEGIN, report.END, None if copy is None else f"\n\n{copy}\n"),
        (move.DOCS_BEGIN, move.DOCS_END, None if moved is None else f"\n\n{moved}\n\n"),
        (dedupe.BEGIN, dedupe.END, None if deduped is None else f"\n{deduped}\n"),
    ]


def render(text: str, data: dict[str, Any]) -> str:
    """``text`` with every generated block and inline figure rewritten from ``data``."""
    for begin, end, body in _blocks(data):
        if body is None or begin not in text:
            continue
        head, rest = text.split(begin, 1)
        if end not in rest:
            raise ValueError(f"{begin} without {end}")
        text = head + begin + body + end + rest.split(end, 1)[1]
    return FIG.sub(lambda m: f"<!-- fig:{m.group(1)} -->{figure(data, m.group(1))}<!-- /fig -->", text)


def render_pages(data: dict[str, Any], pages: Iterable[Path] = PAGES) -> list[Path]:
    """Rewrite the pages (and redraw the chart) from ``data``; the paths that changed."""
    changed = []
    for page in pages:
        text = page.read_text()
        new = render(text, data)
        if new != text:
            page.write_text(new)
            changed.append(page)
    if data["copy"] is not None:
        try:
            from bench import chart
        except ImportError:
            print(
                "matplotlib is not installed (pip install -e '.[bench]'): chart not redrawn", file=sys.stderr
            )
        else:
            chart.draw(data["copy"], CHART, dark=False)
            chart.draw(data["copy"], CHART_DARK, dark=True)
            changed += [CHART, CHART_DARK]
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m bench docs``: regenerate every page and the chart from docs/data/benchmark.json."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench docs", description=main.__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="the results file (default %(default)s)")
    args = parser.parse_args(argv)
    for path in render_pages(load(args.data)):
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0
