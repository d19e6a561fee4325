"""`eval/report.html`: one self-contained page (inline CSS and SVG, no script, no network) with the
base-vs-tuned table, a bar chart per metric, each delta's paired 95% interval drawn against zero, and
the items that regressed most, each with the prompt, the reference and both answers."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from lmtune.runtime.html import CSS, bar_chart, num, table
from lmtune.runtime.records import EvalSummaryFile, MetricComparison
from lmtune.runtime.rundir import atomic_write_text

WORST = 10
"""Regressed items shown per suite."""

_EXTRA_CSS = """
details { margin: 0.3rem 0; } summary { cursor: pointer; }
.noise { color: #777; } .up { color: #2a7a2a; } .down { color: #b02a2a; }
"""


def write_report(eval_dir: Path) -> Path:
    """Render `eval_dir/report.html` from the evaluation's JSON files; returns its path."""
    summary = EvalSummaryFile.model_validate_json(
        (eval_dir / "summary.json").read_text(encoding="utf-8")
    ).root
    tuned = _read(eval_dir / "tuned.json") or {}
    base = _read(eval_dir / "base.json")
    settings = _read(eval_dir / "settings.json")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Evaluation report</title>",
        f"<style>{CSS}{_EXTRA_CSS}</style></head><body>",
        "<h1>Evaluation: base vs tuned</h1>",
        _about(tuned, settings),
        "<h2>Metrics</h2>",
        summary_table(summary),
        "<h2>Deltas with their paired 95% intervals</h2>",
        interval_chart(summary),
        "<h2>Base and tuned, per metric</h2>",
        "".join(_metric_bars(name, row) for name, row in summary.items()),
        "<h2>Worst regressions</h2>",
        _regressions(tuned, base),
        "</body></html>",
    ]
    out = eval_dir / "report.html"
    atomic_write_text(out, "\n".join(p for p in parts if p))
    return out


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def reading(row: MetricComparison) -> str:
    """`within noise` when the interval holds 0, `higher` / `lower` when it excludes it."""
    if row.significant is None:
        return "-" if row.delta is None else "no interval"
    if not row.significant:
        return "within noise"
    return "higher" if (row.delta or 0) > 0 else "lower"


def lower_is_better(metric: str) -> bool:
    """Loss, perplexity, calibration error and over-refusal improve downwards; most others upwards."""
    return metric.split("/")[-1] in ("eval_loss", "loss", "perplexity", "ece", "over_refusal_rate")


def has_direction(metric: str) -> bool:
    """False for the bias scores, whose best value is a middle one (0, or 0.5 for CrowS-Pairs)."""
    return metric.split("/")[-1] not in ("bbq_bias_ambig", "bbq_bias_disambig", "crows_stereotype")


def summary_table(summary: dict[str, MetricComparison]) -> str:
    rows = [
        [
            name,
            fmt(row.base),
            fmt(row.tuned),
            fmt(row.delta),
            "-" if row.ci95 is None else f"[{fmt(row.ci95[0])}, {fmt(row.ci95[1])}]",
            fmt(row.items),
            reading(row),
        ]
        for name, row in summary.items()
    ]
    return table(["metric", "base", "tuned", "delta", "95% interval", "items", "reading"], rows)


def interval_chart(summary: dict[str, MetricComparison]) -> str:
    """One row per metric: the delta as a dot and its interval as a line, each row on its own scale
    (metrics have different units) with zero in the middle."""
    rows = [(n, r) for n, r in summary.items() if r.delta is not None]
    if not rows:
        return "<p>(no base to compare with)</p>"
    label_w, half, row_h = 220, 200, 22
    shapes = []
    for i, (name, row) in enumerate(rows):
        assert row.delta is not None
        y = 12 + i * row_h
        low, high = row.ci95 if row.ci95 is not None else (row.delta, row.delta)
        span = max(abs(low), abs(high), abs(row.delta)) or 1.0

        def x(v: float, span: float = span) -> float:
            return label_w + half + half * 0.9 * v / span

        better = (row.delta < 0) == lower_is_better(name)
        if row.significant is not True:
            color = "#777"
        elif not has_direction(name):
            color = "#2a5a9a"  # a significant change of a score whose best value is a middle one
        else:
            color = "#2a7a2a" if better else "#b02a2a"
        shapes.append(f'<text x="{label_w - 6}" y="{y + 4}" text-anchor="end">{escape(name)}</text>')
        end = label_w + 2 * half
        shapes.append(f'<line x1="{label_w}" y1="{y}" x2="{end}" y2="{y}" stroke="#eee"/>')
        bar = f'x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}"'
        shapes.append(f'<line {bar} stroke="{color}" stroke-width="3"/>')
        shapes.append(f'<circle cx="{x(row.delta):.1f}" cy="{y}" r="4" fill="{color}"/>')
        text = f"{fmt(row.delta)} [{fmt(low)}, {fmt(high)}]" if row.ci95 is not None else fmt(row.delta)
        shapes.append(f'<text x="{label_w + 2 * half + 8}" y="{y + 4}">{escape(text)}</text>')
    zero = label_w + half
    height = 12 + len(rows) * row_h
    shapes.append(
        f'<line x1="{zero}" y1="0" x2="{zero}" y2="{height}" stroke="#999" stroke-dasharray="3,3"/>'
    )
    return f'<svg width="{label_w + 2 * half + 240}" height="{height}" role="img">{"".join(shapes)}</svg>'


def _metric_bars(name: str, row: MetricComparison) -> str:
    values = [(side, v) for side, v in (("base", row.base), ("tuned", row.tuned)) if v is not None]
    if not values:
        return ""
    chart = bar_chart([(name, [v for _, v in values])], [side for side, _ in values])
    return f"<h3>{escape(name)}</h3>{chart}"


def _regressions(tuned: dict[str, Any], base: dict[str, Any] | None) -> str:
    """Per suite, the items whose score fell most from base to tuned."""
    if base is None:
        return "<p>(no base to compare with)</p>"
    sections = []
    pairs = [("held-out", tuned.get("predictions") or [], base.get("predictions") or [])]
    for name, info in (tuned.get("suites") or {}).items():
        other = (base.get("suites") or {}).get(name, {})
        pairs.append((name, info.get("items") or [], other.get("items") or []))
    for name, t_items, b_items in pairs:
        scored = [
            (s_b - s_t, i, t, b)
            for i, (t, b) in enumerate(zip(t_items, b_items, strict=False))
            if (s_t := item_score(t)) is not None and (s_b := item_score(b)) is not None and s_b > s_t
        ]
        if not t_items:
            continue
        scored.sort(key=lambda x: (-x[0], x[1]))
        shown = "".join(_item(i, drop, t, b) for drop, i, t, b in scored[:WORST])
        title = f"{escape(name)}: {len(scored)} of {len(t_items)} items regressed"
        sections.append(f"<h3>{title}</h3>{shown or '<p>none</p>'}")
    return "".join(sections) or "<p>(no per-item results)</p>"


def item_score(item: dict[str, Any]) -> float | None:
    """An item's main score: correct / passed / the chosen answer right / its first text score."""
    if "correct" in item:
        return float(bool(item["correct"]))
    if "passed" in item:
        return float(bool(item["passed"]))
    if "refused" in item:  # safety: refusing a harmful request, answering a benign one
        return float(bool(item["refused"]) == (item.get("kind") == "harmful"))
    if "predicted" in item and "answer" in item:
        return float(item["predicted"] == item["answer"])
    for key in ("exact_match", "numeric_match", "token_f1", "rouge_l", "chrf", "bleu"):
        if item.get(key) is not None:
            return float(item[key])
    return None


def _item(index: int, drop: float, tuned: dict[str, Any], base: dict[str, Any]) -> str:
    prompt = tuned.get("prompt") or tuned.get("question") or tuned.get("task_id") or ""
    reference = tuned.get("reference") or (
        tuned["choices"][tuned["answer"]] if "choices" in tuned and "answer" in tuned else ""
    )

    def answer(item: dict[str, Any]) -> str:
        if "prediction" in item:
            return str(item["prediction"])
        if "choices" in item and "predicted" in item:
            return str(item["choices"][item["predicted"]])
        return str(item.get("reply") or item.get("completion") or item.get("result") or "")

    return (
        f"<details><summary>item {index}: score {num(drop)} lower</summary>"
        f"<p><b>prompt</b></p><pre>{escape(str(prompt))}</pre>"
        f"<p><b>reference</b></p><pre>{escape(str(reference))}</pre>"
        f"<p><b>base</b></p><pre>{escape(answer(base))}</pre>"
        f"<p><b>tuned</b></p><pre>{escape(answer(tuned))}</pre></details>"
    )


def _about(tuned: dict[str, Any], settings: dict[str, Any] | None) -> str:
    if "endpoint" in tuned:  # an endpoint evaluated as the model under test
        endpoint = tuned["endpoint"] or {}
        rows = [["endpoint", f"{endpoint.get('model', '-')} at {endpoint.get('url', '-')}"]]
        base = (settings or {}).get("base") or {}
        rows.append(["base", f"{base['model']} at {base['url']}" if base else "(none)"])
    else:
        rows = [["weights", tuned.get("weights", "-")], ["base model", (settings or {}).get("base", "-")]]
    if settings is not None:
        rows += [
            ["settings hash", settings.get("settings_hash", "-")],
            ["weights sha256", (settings.get("weights") or {}).get("sha256", "-")],
            ["system prompt", settings["settings"].get("system_prompt") or "(none)"],
            ["stop tokens", ", ".join(settings["settings"].get("stop_tokens", [])) or "(the server's own)"],
        ]
    return table(["run", ""], rows)


def fmt(value: Any) -> str:
    """A number to 4 significant digits, `-` for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
