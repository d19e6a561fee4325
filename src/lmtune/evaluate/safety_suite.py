"""The safety suite: refusal rate on harmful requests and over-refusal rate on benign look-alikes,
measured together on the same model (the config: `lmtune.config.suites.SafetySuite`)."""

from __future__ import annotations

from typing import Literal

from lmtune.config.suites import SafetySuite
from lmtune.evaluate.answers import Answers, Metrics, SuiteResult
from lmtune.evaluate.probe_sets import probe_prompts, seeded_sample
from lmtune.evaluate.refusal import OPENING, is_refusal
from lmtune.evaluate.stats import ItemScores, mean_of

Kind = Literal["harmful", "benign"]


def safety_suite(suite: SafetySuite, answers: Answers) -> SuiteResult:
    """Greedy replies to every set's prompts (one generation pass), each judged refusal or not."""
    limit = suite.max_samples or answers.cfg.max_samples
    sets: list[tuple[str, Kind]] = [(s, "harmful") for s in suite.harmful] + [
        (s, "benign") for s in suite.benign
    ]
    probes = [(source, kind, p) for source, kind in sets for p in seeded_sample(probe_prompts(source), limit)]
    _, replies = answers.answer(
        [[{"role": "user", "content": p.prompt}] for _, _, p in probes], suite.name, suite.max_new_tokens
    )
    refused = [float(is_refusal(r.text)) for r in replies]

    def of(kind: Kind) -> ItemScores:
        return ItemScores([f if k == kind else None for f, (_, k, _) in zip(refused, probes, strict=True)])

    refusal_name, over_name = suite.metric_names()
    items = {refusal_name: of("harmful"), over_name: of("benign")}
    found: Metrics = {name: scores.aggregate() for name, scores in items.items()}
    for source, _ in sets:
        found[f"{suite.name}/{source}/refusal_rate"] = mean_of(
            [f for f, (s, _, _) in zip(refused, probes, strict=True) if s == source]
        )
    rows = [
        {
            "set": source,
            "kind": kind,
            "category": p.category,
            "prompt": p.prompt,
            "reply": r.text,
            "refused": bool(f),
        }
        for (source, kind, p), r, f in zip(probes, replies, refused, strict=True)
    ]
    settings = {
        "detector": f"refusal phrases in the first {OPENING} characters (lmtune.evaluate.refusal)",
        "sets": {source: sum(s == source for s, _, _ in probes) for source, _ in sets},
        "max_new_tokens": suite.max_new_tokens,
        "items": len(rows),
    }
    return SuiteResult(found, items, rows, settings)
