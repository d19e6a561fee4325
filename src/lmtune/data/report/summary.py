"""`lmtune data inspect`: what the data stage made of the sources, as JSON, self-contained HTML and a table.

Everything comes from the run directory: `data/stats.json` (counts by source and reason, the mixture
block, and any block a later step adds, e.g. curation) and the prepared Arrow splits (token lengths,
read through Arrow without loading the rows into Python). `inspect` prepares the data first when the run
has none, or when it was prepared from other settings. See docs/data-report.md for every field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.data.prepare import load_or_prepare
from lmtune.data.report.html import render_html
from lmtune.runtime.console import summary_console
from lmtune.runtime.rundir import RunDir, atomic_write_text

if TYPE_CHECKING:
    from datasets import Dataset
    from rich.console import Console

    from lmtune.config.data import DataConfig
    from lmtune.data.prepare import PreparedData
    from lmtune.runtime.processing import Processor

HISTOGRAM_BINS = 20
_KNOWN = {
    "read",
    "accepted",
    "rejected",
    "rejected_by_reason",
    "sources",
    "split",
    "tokens",
    "packing",
    "mixture",
    "fingerprint",
    "prepare_key",
}
"""stats.json keys the report lays out itself; any other block is shown as it is."""


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put the report, and the report itself."""

    json_path: Path
    html_path: Path
    report: dict[str, Any]


def inspect(data: DataConfig, rundir: RunDir, processor: Processor, *, seed: int) -> ReportFiles:
    """Prepare the run's data if needed (none yet, or other settings), then write the report next to it.

    Raises:
        DataError: the data cannot be prepared (see `lmtune.data.prepare.prepare`).
    """

    prepared = load_or_prepare(data, rundir, processor, seed=seed)
    return write_report(rundir, prepared)


def write_report(rundir: RunDir, prepared: PreparedData) -> ReportFiles:
    """Write `data/data_report.json` and `data/data_report.html` for prepared data."""

    report = build_report(rundir, prepared)
    json_path = rundir.data / "data_report.json"
    html_path = rundir.data / "data_report.html"
    atomic_write_text(json_path, json.dumps(report, indent=2, default=str))
    atomic_write_text(html_path, render_html(report))
    return ReportFiles(json_path, html_path, report)


def build_report(rundir: RunDir, prepared: PreparedData) -> dict[str, Any]:
    """The report as plain data: counts, source mix, rejects, token lengths per split, label balance."""
    stats = prepared.stats
    mixture = stats.get("mixture") or {}
    mixed = {s["path"]: s for s in mixture.get("sources", [])}
    sources = []
    for src in stats.get("sources", []):
        row = dict(src)
        if src["path"] in mixed:
            row["train_before"] = mixed[src["path"]]["before"]
            row["train_after"] = mixed[src["path"]]["after"]
        sources.append(row)
    lengths = {"train": token_lengths(prepared.train), "eval": token_lengths(prepared.eval)}
    top = max((max(v, default=0) for v in lengths.values()), default=0)
    edges = histogram_edges(top, HISTOGRAM_BINS)
    packed = bool(stats.get("packing", {}).get("enabled"))
    splits = {
        name: {
            "examples": stats.get("split", {}).get(name),
            "rows": len(values),
            "packed": packed and name == "train",
            "tokens": stats.get("tokens", {}).get(name),
            "lengths": length_summary(values),
            "histogram": {"edges": edges, "counts": histogram(values, edges)},
        }
        for name, values in lengths.items()
    }
    return {
        "run": str(rundir.root),
        "counts": {k: stats.get(k) for k in ("read", "accepted", "rejected")},
        "rejected_by_reason": stats.get("rejected_by_reason", {}),
        "sources": sources,
        "splits": splits,
        "mixture": {
            k: mixture.get(k) for k in ("enabled", "train_before", "train_after", "repeated", "unused")
        },
        "labels": mixture.get("labels"),
        "class_weights": mixture.get("class_weights"),
        "fingerprint": stats.get("fingerprint"),
        "other": {k: v for k, v in stats.items() if k not in _KNOWN},
    }


def token_lengths(dataset: Dataset) -> list[int]:
    """Length of every row's `input_ids`, read from the Arrow column."""
    # deferred: pyarrow only when this runs (keeps `import lmtune...` light)
    import pyarrow.compute as pc

    if len(dataset) == 0:
        return []
    column = dataset.data.table.column("input_ids")
    return [int(n) for n in pc.list_value_length(column).to_pylist()]


def histogram_edges(top: int, bins: int) -> list[int]:
    """`bins` + 1 integer edges from 0 to at least `top`, equal width (at least 1)."""
    width = max(1, -(-top // bins))
    return [i * width for i in range(bins + 1)]


def histogram(values: list[int], edges: list[int]) -> list[int]:
    """Counts per bin [edges[i], edges[i+1]); the last bin also holds values equal to its upper edge."""
    counts = [0] * (len(edges) - 1)
    if not counts:
        return counts
    width = edges[1] - edges[0]
    for v in values:
        counts[min(v // width, len(counts) - 1)] += 1
    return counts


def length_summary(values: list[int]) -> dict[str, float | int | None]:
    """min / mean / median / p95 / max of the lengths (None for an empty split)."""
    if not values:
        return {"min": None, "mean": None, "median": None, "p95": None, "max": None}
    ordered = sorted(values)

    def quantile(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 2),
        "median": quantile(0.5),
        "p95": quantile(0.95),
        "max": ordered[-1],
    }


def print_summary(report: dict[str, Any], console: Console | None = None) -> None:
    """The terminal summary: counts, sources, rejects by reason, splits, labels (rich tables)."""
    # deferred: rich only when this runs (keeps `import lmtune...` light)
    from rich.table import Table

    out = console or summary_console()
    counts = report["counts"]
    out.print(
        f"[bold]{report['run']}[/bold]: {counts['read']} read, {counts['accepted']} accepted, "
        f"{counts['rejected']} rejected"
    )
    sources = Table(title="sources")
    for col in ("source", "format", "read", "accepted", "rejected", "train", "train mixed"):
        sources.add_column(col, justify="left" if col in ("source", "format") else "right")
    for s in report["sources"]:
        sources.add_row(
            s["path"],
            s["format"],
            *(str(s.get(k, "")) for k in ("read", "accepted", "rejected", "train_before", "train_after")),
        )
    out.print(sources)
    if report["rejected_by_reason"]:
        rejects = Table(title="rejects by reason")
        rejects.add_column("reason")
        rejects.add_column("count", justify="right")
        for reason, n in sorted(report["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
            rejects.add_row(reason, str(n))
        out.print(rejects)
    splits = Table(title="splits (token lengths per row)")
    for col in ("split", "rows", "tokens", "labelled", "median", "p95", "max"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    for name, s in report["splits"].items():
        tokens = s["tokens"] or {}
        lengths = s["lengths"]
        splits.add_row(
            name + (" (packed)" if s["packed"] else ""),
            str(s["rows"]),
            str(tokens.get("total", "")),
            str(tokens.get("labelled", "")),
            *(str(lengths[k] if lengths[k] is not None else "-") for k in ("median", "p95", "max")),
        )
    out.print(splits)
    labels = report["labels"]
    if labels:
        table = Table(title=f"labels ({labels['field']}, {labels['strategy']})")
        for col in ("label", "train before", "train after", "eval", "class weight"):
            table.add_column(col, justify="left" if col == "label" else "right")
        weights = report["class_weights"] or {}
        names = sorted(set(labels["before"]) | set(labels["after"]) | set(labels["eval"]))
        for name in names:
            weight = f"{weights[name]:.3f}" if name in weights else ""
            table.add_row(
                name,
                *(str(labels[k].get(name, 0)) for k in ("before", "after", "eval")),
                weight,
            )
        out.print(table)
