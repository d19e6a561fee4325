"""The data report as one self-contained HTML page: inline CSS and inline SVG charts, no script, no
external file, font or link, so it opens the same with no network. Every text from the data is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from lmtune.runtime.html import COLORS, CSS, bar_chart, table


def render_html(report: dict[str, Any]) -> str:
    """The whole page for a report built by `lmtune.data.report.build_report`."""
    counts = report["counts"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data report: {escape(report['run'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Data report: {escape(report['run'])}</h1>",
        table(["read", "accepted", "rejected"], [[counts["read"], counts["accepted"], counts["rejected"]]]),
        _sources(report),
        _rejects(report),
        _lengths(report),
        _labels(report),
        _other(report),
        f"<p>fingerprint <code>{escape(str(report.get('fingerprint')))}</code></p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _sources(report: dict[str, Any]) -> str:
    rows = report["sources"]
    header = ["source", "format", "read", "accepted", "rejected", "train", "train mixed"]
    sources = table(
        header,
        [
            [
                *(s[k] for k in ("path", "format", "read", "accepted", "rejected")),
                s.get("train_before", ""),
                s.get("train_after", ""),
            ]
            for s in rows
        ],
    )
    chart = bar_chart([(s["path"], [s["accepted"], s["rejected"]]) for s in rows], ["accepted", "rejected"])
    html = f"<h2>Source mix</h2>{sources}{chart}"
    if report["mixture"].get("enabled"):
        mixed = [(s["path"], [s.get("train_before", 0), s.get("train_after", 0)]) for s in rows]
        m = report["mixture"]
        html += (
            f"<p>Train split mixed: {m['train_before']} records before, {m['train_after']} after "
            f"({m['repeated']} repeated copies, {m['unused']} records not used).</p>"
            + bar_chart(mixed, ["train before", "train after"])
        )
    return html


def _rejects(report: dict[str, Any]) -> str:
    reasons = sorted(report["rejected_by_reason"].items(), key=lambda kv: -kv[1])
    if not reasons:
        return "<h2>Rejects by reason</h2><p>No record was rejected.</p>"
    return "<h2>Rejects by reason</h2>" + bar_chart([(r, [n]) for r, n in reasons], ["rejected"])


def _lengths(report: dict[str, Any]) -> str:
    html = ["<h2>Token lengths per split</h2>"]
    rows = []
    for name, split in report["splits"].items():
        s = split["lengths"]
        label = name + (" (packed rows)" if split["packed"] else "")
        rows.append([label, split["rows"], *(s[k] if s[k] is not None else "-" for k in s)])
    html.append(table(["split", "rows", "min", "mean", "median", "p95", "max"], rows))
    for name, split in report["splits"].items():
        hist = split["histogram"]
        html.append(f"<h3>{escape(name)}</h3>" + histogram_svg(hist["edges"], hist["counts"]))
    return "".join(html)


def _labels(report: dict[str, Any]) -> str:
    labels = report.get("labels")
    if not labels:
        return ""
    names = sorted(set(labels["before"]) | set(labels["after"]) | set(labels["eval"]))
    weights = report.get("class_weights") or {}
    rows = [
        [
            name,
            *(labels[k].get(name, 0) for k in ("before", "after", "eval")),
            f"{weights[name]:.3f}" if name in weights else "",
        ]
        for name in names
    ]
    chart = bar_chart(
        [(name, [labels["before"].get(name, 0), labels["after"].get(name, 0)]) for name in names],
        ["train before", "train after"],
    )
    title = f"Label balance: field <code>{escape(labels['field'])}</code>, {escape(labels['strategy'])}"
    header = ["label", "train before", "train after", "eval", "class weight"]
    return f"<h2>{title}</h2>{table(header, rows)}{chart}"


def _other(report: dict[str, Any]) -> str:
    other = report.get("other") or {}
    return "".join(
        f"<h2>{escape(name)}</h2><pre>{escape(json.dumps(block, indent=2, default=str))}</pre>"
        for name, block in other.items()
    )


def histogram_svg(edges: list[int], counts: list[int]) -> str:
    """Vertical bars, one per bin, with the bin edges under every fourth bar and the count above each."""
    if not counts or not any(counts):
        return "<p>(no rows)</p>"
    left, width, height, bottom = 40, 640, 160, 30
    top = max(counts)
    bar = width / len(counts)
    shapes = [f'<line x1="{left}" y1="{height}" x2="{left + width}" y2="{height}" stroke="#999"/>']
    for i, n in enumerate(counts):
        h = (height - 14) * n / top
        x = left + i * bar
        shapes.append(
            f'<rect x="{x + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
            f'fill="{COLORS[0]}"><title>{edges[i]}-{edges[i + 1]} tokens: {n}</title></rect>'
        )
        if n:
            shapes.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - h - 3:.1f}" text-anchor="middle">{n}</text>'
            )
    for i in range(0, len(edges), 4):
        shapes.append(
            f'<text x="{left + i * bar:.1f}" y="{height + 14}" text-anchor="middle">{edges[i]}</text>'
        )
    shapes.append(
        f'<text x="{left + width / 2}" y="{height + bottom - 2}" text-anchor="middle">tokens per row</text>'
    )
    return (
        f'<svg width="{left + width + 20}" height="{height + bottom}" role="img">'
        + "".join(shapes)
        + "</svg>"
    )
