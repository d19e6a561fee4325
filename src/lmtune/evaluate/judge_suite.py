"""The judge suite: its answers (per model) and the judge's verdicts — single ratings per model, and the
pairwise comparison of tuned against base once both have answered."""

from __future__ import annotations

from typing import Any

from lmtune.config.suites import JudgeSuite
from lmtune.evaluate import metrics
from lmtune.evaluate.answers import Answers, SuiteResult
from lmtune.evaluate.judge import Judge, agreement
from lmtune.evaluate.stats import ItemScores


def _judge(suite: JudgeSuite) -> Judge:
    return Judge(
        suite.endpoint,
        suite.model,
        api_key_env=suite.api_key_env,
        rubric=suite.rubric,
        scale=suite.scale,
        max_tokens=suite.max_tokens,
        timeout_s=suite.timeout_s,
    )


def answered(suite: JudgeSuite, answers: Answers) -> list[dict[str, Any]]:
    """One row per item: question (the last user turn), reference, the model's answer."""
    return [
        {"question": a.messages[-1]["content"], "reference": a.reference, "prediction": a.completion.text}
        for a in answers.task_answers(suite.path, suite.max_samples, suite.name)
    ]


def judge_suite(suite: JudgeSuite, answers: Answers) -> SuiteResult:
    """Single mode: the judge's ratings of this model's answers. Pairwise mode: only the answers (the
    pairs are judged by `judge_pairs` once base and tuned have both answered)."""
    rows = answered(suite, answers)
    settings = {"endpoint": suite.endpoint, "model": suite.model, "mode": suite.mode, "items": len(rows)}
    if suite.mode == "pairwise":
        return SuiteResult({}, {}, rows, settings)
    judge = _judge(suite)
    try:
        for row in rows:
            verdict = judge.grade(
                row["question"], row["prediction"], row["reference"] if suite.use_reference else None
            )
            row |= {"judge_prompt": verdict.prompt, "judge_output": verdict.output, "rating": verdict.value}
    finally:
        judge.close()
    scores = [None if r["rating"] is None else r["rating"] / suite.scale for r in rows]
    exact = [metrics.score(r["prediction"], r["reference"]) for r in rows]
    numeric = [s.reference_answer is not None for s in exact]
    judged = [
        None if r["rating"] is None or not n else r["rating"] > (1 + suite.scale) / 2
        for r, n in zip(rows, numeric, strict=True)
    ]
    agree, counted = agreement(judged, [s.correct for s in exact])
    settings |= {"unparsed": sum(r["rating"] is None for r in rows), "agreement_items": counted}
    score_items = ItemScores(scores)
    agree_items = ItemScores(
        [None if j is None else float(j == s.correct) for j, s in zip(judged, exact, strict=True)]
    )
    found = {f"{suite.name}/score": score_items.aggregate(), f"{suite.name}/agreement": agree}
    return SuiteResult(
        found, {f"{suite.name}/score": score_items, f"{suite.name}/agreement": agree_items}, rows, settings
    )


def judge_pairs(
    suite: JudgeSuite, tuned_rows: list[dict[str, Any]], base_rows: list[dict[str, Any]]
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Tuned against base on each item, judged twice with the positions swapped."""
    judge = _judge(suite)
    outcomes, rows = [], []
    try:
        for t, b in zip(tuned_rows, base_rows, strict=True):
            outcome, calls = judge.compare(
                t["question"],
                t["prediction"],
                b["prediction"],
                t["reference"] if suite.use_reference else None,
            )
            outcomes.append(outcome)
            rows.append(
                {
                    "question": t["question"],
                    "reference": t["reference"],
                    "tuned": t["prediction"],
                    "base": b["prediction"],
                    "outcome": outcome,
                    "judge_prompts": [c.prompt for c in calls],
                    "judge_outputs": [c.output for c in calls],
                    "verdicts": [c.value for c in calls],
                }
            )
    finally:
        judge.close()
    n = len(outcomes)
    rates = {
        f"{suite.name}/{k}_rate": (outcomes.count(k) / n if n else None)
        for k in ("win", "loss", "tie", "inconsistent")
    }
    return rates, rows
