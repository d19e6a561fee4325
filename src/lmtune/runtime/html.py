"""Self-contained HTML pieces shared by lmtune's reports (the data report, the evaluation report):
inline CSS and inline SVG charts, no script, no external file, font or link, so a page opens the same
with no network. Every text is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
CSS = """
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


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain table; every cell escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def legend(series: list[str]) -> str:
    """Colour keys of the series, in `COLORS` order."""
    items = "".join(
        f'<span><i style="background:{COLORS[k % len(COLORS)]}"></i>{escape(name)}</span>'
        for k, name in enumerate(series)
    )
    return f'<div class="legend">{items}</div>'


def bar_chart(rows: list[tuple[str, list[float]]], series: list[str]) -> str:
    """Horizontal grouped bars: one group per row label, one bar per series, the value written after it.
    Bars are as long as the value's magnitude (a negative value's label keeps its sign)."""
    if not rows:
        return ""
    label_w, bar_w, bar_h, gap = 220, 420, 14, 10
    top = max((abs(v) for _, values in rows for v in values), default=0) or 1
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
            w = bar_w * abs(value) / top
            y = y0 + k * bar_h
            color = COLORS[k % len(COLORS)]
            shapes.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4}">{num(value)}</text>'
            )
    svg = f'<svg width="{label_w + bar_w + 60}" height="{height}" role="img">' + "".join(shapes) + "</svg>"
    return (legend(series) if len(series) > 1 else "") + svg


def num(value: float) -> str:
    """An integer as is, anything else to 3 significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"
