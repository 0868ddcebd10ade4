"""Results as a markdown table, a PNG chart, and the generated part of docs/performance.md."""

from __future__ import annotations

import os
from typing import Any, Final

from bench.tools import BASELINES, TOOLS

__all__ = ["BEGIN", "END", "add_ratios", "chart", "markdown", "ratio", "seconds", "update_docs"]

BEGIN: Final = (
    "<!-- benchmark:begin (generated from docs/data/benchmark.json by `python -m bench docs`; "
    "edits here are overwritten) -->"
)
END: Final = "<!-- benchmark:end -->"
FS_NAMES: Final = {"xfs": "XFS", "btrfs": "btrfs", "ext4": "ext4"}
MIB: Final = 1024 * 1024
X: Final = "\u00d7"  # the multiplication sign, written as an escape for the linter


def _label(case: str, key: str, rows: list[dict[str, Any]] | None = None) -> str:
    known = next((t.label for t in TOOLS if t.case == case and t.key == key), None)
    if known is not None:
        return known
    return next((r.get("label", key) for r in rows or () if (r["case"], r["tool"]) == (case, key)), key)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``ratios``: its median time divided by each baseline's, same case and filesystem."""
    for row in rows:
        ratios: dict[str, float | None] = {}
        for base in BASELINES.get(row["case"], ()):
            other = next(
                (r for r in rows if (r["case"], r["fs"], r["tool"]) == (row["case"], row["fs"], base)), None
            )
            if other is None or not other.get("median_s") or row.get("median_s") is None:
                ratios[base] = None
            else:
                ratios[base] = row["median_s"] / other["median_s"]
        row["ratios"] = ratios


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.1:
        return f"{value:.2g}{X}"
    return f"{value:.2f}{X}" if value < 10 else f"{value:,.0f}{X}"


def _mib(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    mib = value / MIB
    return f"{mib:+.1f} MiB" if sign else f"{mib:.1f} MiB"


def _memory(row: dict[str, Any]) -> str:
    peak = row.get("maxrss_kib")
    if peak is None:
        return "—"
    text = f"{peak / 1024:.1f} MiB"
    growth = row.get("rss_growth_kib")
    if growth is not None:
        text += f" (+{growth / 1024:.1f})"
    helpers = row.get("helpers_private_kib")
    if helpers is not None:
        text += f"; {row.get('helpers', '?')} helpers {helpers / 1024:.1f} MiB private"
    return text


def source_text(rows: list[dict[str, Any]], case: str) -> str:
    source = next((r["source"] for r in rows if r["case"] == case and "source" in r), None)
    if source is None:
        return ""
    if "dirs" in source:
        return f"{source['files']:,} files in {source['dirs']} directories, {source['bytes'] / MIB:.1f} MiB"
    return f"one file of {source['bytes'] / MIB:,.0f} MiB"


# The floor each case's summary compares with (bench.tools).
_FLOOR: Final = {"file": "ficlone", "tree": "floor"}


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| Case | Filesystem | cowpath | {X} cp --reflink=auto | {X} shutil | {X} floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["tool"] != "cowpath":
            continue
        ratios = row.get("ratios", {})
        lines.append(
            f"| {row['case']} | {FS_NAMES.get(row['fs'], row['fs'])} | {seconds(row.get('median_s'))} | "
            + " | ".join(ratio(ratios.get(b)) for b in ("cp", "shutil", _FLOOR.get(row["case"], "")))
            + " |"
        )
    lines += [
        "",
        "The floor is what no Python copy can beat: for the file, the bare `FICLONE` ioctl; for the "
        "tree, the same system calls as cowpath's made by bare loops, one process per core.",
    ]
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The summary of cowpath's ratios, then one table per case with every tool."""
    meta = data["meta"]
    rows: list[dict[str, Any]] = data["results"]
    versions = meta.get("versions", {})
    out = [
        f"Measured {meta['date']} with `{meta.get('command', 'python -m bench')}`: "
        f"Linux {meta['kernel']}, {meta['cpus']} {X} {meta['cpu']}, Python {meta['python']}, "
        f"cowpath {versions.get('cowpath', '?')} at `{meta.get('cowpath_commit')}`, "
        f"{meta.get('cp') or 'cp'}, reflink-copy {versions.get('reflink-copy', 'unavailable')}, "
        f"reflink {versions.get('reflink', 'unavailable')}. "
        f"Median of {meta['rounds']} rounds; page cache "
        f"{'dropped' if meta.get('drop_caches') else 'NOT dropped'} before every copy.",
        "",
        "cowpath's wall time divided by each baseline's, same filesystem, same run (below 1 is faster):",
        "",
        *_summary(rows),
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        case_rows = [r for r in rows if r["case"] == case]
        bases = BASELINES.get(case) or tuple(case_rows[0].get("ratios", {}))
        title = {"tree": "Tree", "smalltree": "Small tree", "file": "Single file"}.get(case, case)
        warm = any(r.get("again_s") is not None for r in case_rows)
        out += [
            "",
            f"**{title}**: {source_text(rows, case)}. Ratios are this tool's median wall time ÷ "
            + " and ÷ ".join(f"`{_label(case, b, rows)}`" for b in bases)
            + "."
            + (
                " *2nd call*: the same call again in the same process to a second new "
                "destination, after a `sync` as before the first (warm process and metadata; "
                "Python tools only)."
                if warm
                else ""
            ),
            "",
            "| Filesystem | Tool | Median | "
            + ("2nd call | " if warm else "")
            + " | ".join(f"{X} {_label(case, b, rows).split(' (')[0]}" for b in bases)
            + " | Space used | Peak RSS (growth) |",
            "|---|---|---:|" + "---:|" * (len(bases) + warm) + "---:|---:|",
        ]
        for row in case_rows:
            fs = FS_NAMES.get(row["fs"], row["fs"])
            if row.get("median_s") is None:
                reason = row.get("error", "no result")
                kind = "n/a" if row.get("unavailable") else "failed"
                out.append(f"| {fs} | {row['label']} | {kind}: {reason} |" + " |" * (len(bases) + 2 + warm))
                continue
            ratios = row.get("ratios", {})
            cells = [seconds(row["median_s"])]
            if warm:
                cells.append(seconds(row.get("again_s")))
            cells += [ratio(ratios.get(b)) for b in bases]
            cells += [_mib(row.get("space_bytes")), _memory(row)]
            out.append(f"| {fs} | {row['label']} | " + " | ".join(cells) + " |")
    cowpath_rows = [r for r in rows if r["tool"] == "cowpath" and r.get("tracemalloc_peak") is not None]
    if cowpath_rows:
        out += ["", "cowpath, one extra untimed run with `tracemalloc` and a `CopyReport`:", ""]
        out += [
            "| Case | Filesystem | Python heap peak | Files cloned | Files copied |",
            "|---|---|---:|---:|---:|",
        ]
        for row in cowpath_rows:
            rep = row.get("report") or {}
            out.append(
                f"| {row['case']} | {FS_NAMES.get(row['fs'], row['fs'])} "
                f"| {row['tracemalloc_peak'] / MIB:.2f} MiB "
                f"| {rep.get('files_cloned', '—')} | {rep.get('files_copied', '—')} |"
            )
    if meta.get("failures"):
        out += ["", "Not measured: " + "; ".join(meta["failures"])]
    return "\n".join(out) + "\n"


def update_docs(path: str, table: str) -> None:
    """Replace the text between the markers of ``path`` with ``table`` (append the markers if missing)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Performance\n\n"
    block = f"{BEGIN}\n\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def chart(data: dict[str, Any], path: str) -> None:
    """Draw the chart of ``data`` to ``path`` (light) and its ``-dark`` twin: see :mod:`bench.chart`."""
    from pathlib import Path

    from bench import chart as draw

    target = Path(path)
    draw.draw(data, target, dark=False)
    draw.draw(data, target.with_name(target.stem + "-dark" + target.suffix), dark=True)
