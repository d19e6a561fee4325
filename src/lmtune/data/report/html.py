"""The data report as one self-contained HTML page: inline CSS and inline SVG charts, no script, no
external file, font or link, so it opens the same with no network. Every text from the data is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 1rem; font-size: 0.85rem; }
.legend i { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.3rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
svg text { font-size: 11px; fill: #333; }
"""


def render_html(report: dict[str, Any]) -> str:
    """The whole page for a report built by `lmtune.data.report.build_report`."""
    counts = report["counts"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data report: {escape(report['run'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Data report: {escape(report['run'])}</h1>",
        _table(["read", "accepted", "rejected"], [[counts["read"], counts["accepted"], counts["rejected"]]]),
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
    table = _table(
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
    html = f"<h2>Source mix</h2>{table}{chart}"
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
    html.append(_table(["split", "rows", "min", "mean", "median", "p95", "max"], rows))
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
    return f"<h2>{title}</h2>{_table(header, rows)}{chart}"


def _other(report: dict[str, Any]) -> str:
    other = report.get("other") or {}
    return "".join(
        f"<h2>{escape(name)}</h2><pre>{escape(json.dumps(block, indent=2, default=str))}</pre>"
        for name, block in other.items()
    )


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _legend(series: list[str]) -> str:
    items = "".join(
        f'<span><i style="background:{COLORS[k % len(COLORS)]}"></i>{escape(name)}</span>'
        for k, name in enumerate(series)
    )
    return f'<div class="legend">{items}</div>'


def bar_chart(rows: list[tuple[str, list[float]]], series: list[str]) -> str:
    """Horizontal grouped bars: one group per row label, one bar per series, the value written after it."""
    if not rows:
        return ""
    label_w, bar_w, bar_h, gap = 220, 420, 14, 10
    top = max((v for _, values in rows for v in values), default=0) or 1
    group_h = bar_h * len(series) + gap
    height = group_h * len(rows) + gap
    shapes = []
    for i, (label, values) in enumerate(rows):
        y0 = gap + i * group_h
        shown = label if len(label) <= 34 else "…" + label[-33:]
        shapes.append(
            f'<text x="{label_w - 6}" y="{y0 + bar_h * len(series) / 2 + 4}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        for k, value in enumerate(values):
            w = bar_w * value / top
            y = y0 + k * bar_h
            color = COLORS[k % len(COLORS)]
            shapes.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4}">{_num(value)}</text>'
            )
    svg = f'<svg width="{label_w + bar_w + 60}" height="{height}" role="img">' + "".join(shapes) + "</svg>"
    return (_legend(series) if len(series) > 1 else "") + svg


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


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"
