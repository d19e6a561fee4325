"""`lmtune evaluate --compare A B [...] --html FILE`: the runs' evaluations side by side as one
self-contained page (inline CSS and SVG, no script, no network): a table of each run's tuned value,
delta vs its base, interval and reading per metric, and per metric the runs' tuned values as bars."""

from __future__ import annotations

from html import escape
from pathlib import Path

from lmtune.evaluate.compare import RunEval, comparison_rows
from lmtune.evaluate.report import fmt, reading
from lmtune.runtime.html import CSS, bar_chart, table
from lmtune.runtime.records import MetricComparison
from lmtune.runtime.rundir import atomic_write_text


def comparison_cell(row: MetricComparison | None) -> str:
    """One run's cell: its tuned value (delta vs its base [95% interval], reading), as the terminal
    table and the page show it."""
    if row is None:
        return "-"
    if row.delta is None:
        return fmt(row.tuned)
    interval = "" if row.ci95 is None else f" [{fmt(row.ci95[0])}, {fmt(row.ci95[1])}]"
    return f"{fmt(row.tuned)} ({fmt(row.delta)}{interval}, {reading(row)})"


def write_comparison(evals: list[RunEval], notes: list[str], path: Path) -> Path:
    """Write the side-by-side page to `path`; `notes` are the flagged settings differences."""
    rows = comparison_rows(evals)
    runs = table(
        ["run", "folder", "settings hash"],
        [[e.name, str(e.folder), e.settings_hash or "not recorded"] for e in evals],
    )
    header = ["metric", *(e.name for e in evals)]
    side_by_side = table(header, [[name, *(comparison_cell(c) for c in cells)] for name, cells in rows])
    charts = []
    for name, cells in rows:
        shown = [
            (e.name, c.tuned)
            for e, c in zip(evals, cells, strict=True)
            if c is not None and c.tuned is not None
        ]
        if shown:
            chart = bar_chart([(name, [v for _, v in shown])], [n for n, _ in shown])
            charts.append(f"<h3>{escape(name)}</h3>{chart}")
    flagged = "".join(f'<p class="flag">FLAGGED: {escape(n)}</p>' for n in notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Evaluations side by side</title>",
        f"<style>{CSS}.flag {{ color: #b02a2a; }}</style></head><body>",
        "<h1>Evaluations side by side</h1>",
        runs,
        flagged,
        "<h2>Tuned value (delta vs base, 95% interval, reading)</h2>",
        side_by_side,
        "<h2>Tuned values, per metric</h2>",
        "".join(charts),
        "</body></html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(p for p in parts if p))
    return path
