"""The benchmark chart: one panel per case, one horizontal bar per tool, grouped by filesystem.

Drawn to be read at the width the docs show it (about 800 px): tool names
on the axis instead of a legend, the value at the end of every bar, times
in ms or s, a note where a tool has no bar (the floors on ext4, which
cannot clone: the bare ioctl and the bare system calls). The background
is transparent; ``dark=True`` draws the twin for the site's dark scheme
(light text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator

from bench import report
from bench.tools import TOOLS

__all__ = ["draw"]

TITLES: Final = {"tree": "Tree", "file": "Single file"}
ROW_INCHES: Final = 0.27


def _order(case_rows: list[dict[str, Any]], case: str) -> list[tuple[str, str]]:
    """(tool key, label) in the order of bench.tools, then any other tool the run had."""
    known = [(t.key, t.label) for t in TOOLS if t.case == case]
    seen = {key for key, _ in known}
    extra = [(r["tool"], r.get("label", r["tool"])) for r in case_rows if r["tool"] not in seen]
    present = {r["tool"] for r in case_rows}
    return [(k, lab) for k, lab in known if k in present] + list(dict.fromkeys(extra))


def _time(value: float, _pos: object = None) -> str:
    if value == 0:
        return "0"
    if value >= 1:
        return f"{value:g} s"
    return f"{value * 1000:g} ms"


def draw(data: dict[str, Any], path: Path, *, dark: bool) -> None:
    """Median wall time of every tool of ``data`` to the PNG ``path``."""
    ink = "#e6e6e6" if dark else "#1f1f1f"
    grid = "#5a5a5a" if dark else "#cfcfcf"
    ours = "#ff9e40" if dark else "#d9600b"
    others = "#7fa7d9" if dark else "#4f7cb3"
    rows: list[dict[str, Any]] = data["results"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    layout = []
    for case in cases:
        case_rows = [r for r in rows if r["case"] == case]
        filesystems = list(dict.fromkeys(r["fs"] for r in case_rows))
        layout.append((case, case_rows, filesystems, _order(case_rows, case)))
    heights = [len(fss) * (len(tools) + 1) * ROW_INCHES + 0.9 for _, _, fss, tools in layout]
    with plt.rc_context(
        {
            "text.color": ink,
            "axes.labelcolor": ink,
            "axes.edgecolor": grid,
            "xtick.color": ink,
            "ytick.color": ink,
            "font.size": 10,
        }
    ):
        fig, axes = plt.subplots(
            len(layout), 1, figsize=(8, sum(heights)), squeeze=False, height_ratios=heights
        )
        for ax, (case, case_rows, filesystems, tools) in zip(axes[:, 0], layout, strict=True):
            ys, labels, values, notes = [], [], [], []
            y = 0.0
            for fs in filesystems:
                ax.text(
                    -0.01,
                    y + 0.35,
                    report.FS_NAMES.get(fs, fs),
                    transform=ax.get_yaxis_transform(),
                    ha="right",
                    va="center",
                    fontweight="bold",
                    fontsize=10.5,
                    clip_on=False,
                )
                y += 0.9
                for key, label in tools:
                    row = next((r for r in case_rows if (r["fs"], r["tool"]) == (fs, key)), None)
                    ys.append(y)
                    # "reflink-copy (copytree + reflink_or_copy)" shortened; "(threads)" kept.
                    head, _, rest = label.partition(" (")
                    labels.append(head if " " in rest else label)
                    median = None if row is None else row.get("median_s")
                    values.append(median)
                    if median is None:
                        reason = "not run" if row is None else row.get("error", "no result")
                        if "ENOTSUP" in reason or "no clone" in reason:
                            reason = f"no bar: {report.FS_NAMES.get(fs, fs)} cannot clone"
                        notes.append((y, reason))
                    y += 1
                y += 0.4
            good = [(yy, v, lab) for yy, v, lab in zip(ys, values, labels, strict=True) if v]
            colors = [ours if lab.startswith("cowpath") else others for _, _, lab in good]
            ax.barh([g[0] for g in good], [g[1] for g in good], height=0.75, color=colors)
            spread = max(v for _, v, _ in good) / min(v for _, v, _ in good) if good else 1
            if spread > 20:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10))
                ax.set_xlim(min(v for _, v, _ in good) / 3, max(v for _, v, _ in good) * 12)
            else:
                ax.set_xlim(0, max(v for _, v, _ in good) * 1.25 if good else 1)
            ax.xaxis.set_major_formatter(FuncFormatter(_time))
            for yy, v, _ in good:
                ax.text(
                    v * (1.08 if spread > 20 else 1.0), yy, " " + report.seconds(v), va="center", fontsize=9
                )
            for yy, note in notes:
                left = ax.get_xlim()[0]
                ax.text(
                    left * (1.2 if spread > 20 else 1),
                    yy,
                    " " + note,
                    va="center",
                    fontsize=9,
                    style="italic",
                )
            ax.set_yticks(ys, labels)
            ax.set_ylim(y - 0.4, -0.6)
            ax.tick_params(axis="y", length=0)
            ax.grid(axis="x", color=grid, linewidth=0.6)
            ax.set_axisbelow(True)
            for side in ("top", "right", "left"):
                ax.spines[side].set_visible(False)
            title = TITLES.get(case, case)
            ax.set_title(f"{title}: {report.source_text(rows, case)}", fontsize=11, loc="left", pad=8)
            ax.set_xlabel(
                "median wall time, lower is faster" + (" (log scale)" if spread > 20 else ""), fontsize=9.5
            )
        meta = data["meta"]
        fig.text(
            0.01,
            0.002,
            f"{meta['date']}, {meta['cpus']} CPUs, Linux {meta['kernel']}, Python {meta['python']}, "
            f"median of {meta['rounds']} rounds, page cache dropped before every copy",
            fontsize=8,
            color=ink,
        )
        fig.tight_layout(rect=(0, 0.015, 1, 1))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, transparent=True)
        plt.close(fig)
