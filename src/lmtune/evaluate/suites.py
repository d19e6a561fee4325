"""The evaluation suites (configs: `lmtune.config.suites`), each run on one model through one
exhaustive `match` (`run_suite`). Suites that score answers to the held-out prompts share one
generation pass per model (`Answers`). Every suite returns per-item scores beside its metrics, so
base and tuned can be compared item by item (`lmtune.evaluate.stats`)."""

from __future__ import annotations

import random
from typing import assert_never

from lmtune.config.suites import (
    AnySuite,
    BiasSuite,
    CodeSuite,
    ExactMatchSuite,
    FormatComplianceSuite,
    GenerationSuite,
    JudgeSuite,
    MultipleChoiceSuite,
    PerplexitySuite,
    SafetySuite,
)
from lmtune.evaluate import metrics
from lmtune.evaluate.answers import Answers, EvalExample, Metrics, SuiteResult
from lmtune.evaluate.bias_suite import bias_suite
from lmtune.evaluate.choice import expected_calibration_error, needs_full_rows, score_choices
from lmtune.evaluate.choice_sets import read_choice_set
from lmtune.evaluate.code_suite import code_suite
from lmtune.evaluate.general import token_rows
from lmtune.evaluate.judge_suite import judge_suite
from lmtune.evaluate.loss import eval_loss, perplexity
from lmtune.evaluate.safety_suite import safety_suite
from lmtune.evaluate.stats import ItemScores
from lmtune.evaluate.text_metrics import FILTERS, score_answers

__all__ = ["Answers", "EvalExample", "Metrics", "SuiteResult", "run_suite"]


def run_suite(suite: AnySuite, answers: Answers) -> SuiteResult:
    """What one suite measures on `answers.model` (the one exhaustive dispatch)."""
    match suite:
        case PerplexitySuite():
            return _perplexity(suite, answers)
        case ExactMatchSuite():
            scores = answers.scored()[2]
            return SuiteResult(
                {"exact_match": metrics.exact_match(scores)},
                {"exact_match": ItemScores([float(s.correct) for s in scores])},
            )
        case FormatComplianceSuite():
            scores = answers.scored()[2]
            values = [float(s.has_format) if s.reference_has_format else None for s in scores]
            return SuiteResult(
                {"format_compliance": metrics.format_compliance(scores)},
                {"format_compliance": ItemScores(values)},
            )
        case GenerationSuite():
            return _generation(suite, answers)
        case MultipleChoiceSuite():
            return _multiple_choice(suite, answers)
        case CodeSuite():
            return code_suite(suite, answers)
        case JudgeSuite():
            return judge_suite(suite, answers)
        case SafetySuite():
            return safety_suite(suite, answers)
        case BiasSuite():
            return bias_suite(suite, answers)
        case _:
            assert_never(suite)


def _generation(suite: GenerationSuite, answers: Answers) -> SuiteResult:
    """Greedy answers to the suite's task file (or the held-out prompts), scored by its text metrics."""
    answered = answers.task_answers(suite.path, suite.max_samples, suite.name)
    prompts = [a.prompt for a in answered]
    references = [a.reference for a in answered]
    predictions = [a.completion.text for a in answered]
    items_by_score, scored = score_answers(predictions, references, suite.scores, suite.answer_filter)
    found: Metrics = {f"{suite.name}/{k}": v.aggregate() for k, v in items_by_score.items()}
    rows = [
        {"prompt": p, "reference": r, "prediction": c, **row}
        for p, r, c, row in zip(prompts, references, predictions, scored, strict=True)
    ]
    settings = {"task_file": suite.path or "held-out split", "items": len(rows)}
    if "numeric_match" in suite.scores:
        settings["answer_filter"] = f"{suite.answer_filter}: {FILTERS[suite.answer_filter]}"
    return SuiteResult(found, {f"{suite.name}/{k}": v for k, v in items_by_score.items()}, rows, settings)


def _multiple_choice(suite: MultipleChoiceSuite, answers: Answers) -> SuiteResult:
    """Log-likelihood accuracy (raw and length-normalised) and calibration on the suite's set."""
    items = read_choice_set(suite.source)
    if suite.order == "shuffled":
        random.Random(0).shuffle(items)
    shots, scored = items[: suite.shots], items[suite.shots :][: suite.max_samples or answers.cfg.max_samples]
    scores = score_choices(
        answers.model,
        answers.tokenizer,
        scored,
        shots,
        system_prompt=answers.system_prompt,
        full_rows=needs_full_rows(answers.model),
        desc=f"{suite.name} ({answers.label})",
    )
    right = [float(s.predicted == s.answer) for s in scores]
    right_norm = [float(s.predicted_norm == s.answer) for s in scores]
    calibration = [(s.confidence, r) for s, r in zip(scores, right, strict=True)]
    items_by_metric = {
        f"{suite.name}/accuracy": ItemScores(right),
        f"{suite.name}/accuracy_norm": ItemScores(right_norm),
        f"{suite.name}/ece": ItemScores(calibration, kind="corpus", corpus=expected_calibration_error),
    }
    rows = [
        {
            "question": item.question,
            "choices": item.choices,
            "answer": item.answer,
            "predicted": s.predicted,
            "predicted_norm": s.predicted_norm,
            "logliks": s.logliks,
            "confidence": s.confidence,
        }
        for item, s in zip(scored, scores, strict=True)
    ]
    settings = {"source": suite.source, "shots": suite.shots, "order": suite.order, "items": len(rows)}
    return SuiteResult(
        {k: v.aggregate() for k, v in items_by_metric.items()}, items_by_metric, rows, settings
    )


def _perplexity(suite: PerplexitySuite, answers: Answers) -> SuiteResult:
    """Token-mean loss and perplexity of the held-out references, or of the suite's `source`."""
    tok = answers.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else answers.stops[0]
    if suite.source is None:
        rows = [e.tokens for e in answers.examples]
    else:
        rows = token_rows(suite.source, tok, limit=suite.max_samples, window=suite.window)
    budget = answers.cfg.batch_size * suite.window  # short rows (chat turns) go many to a batch
    loss = eval_loss(
        answers.model, rows, batch_size=answers.cfg.batch_size, pad_id=pad_id, token_budget=budget
    )
    loss_name, ppl_name = suite.metric_names()
    found: Metrics = {loss_name: loss.loss, ppl_name: loss.perplexity}
    found["eval_tokens" if suite.source is None else f"{suite.name}/tokens"] = loss.tokens
    items = {
        loss_name: ItemScores(list(loss.per_row), kind="ratio"),
        ppl_name: ItemScores(list(loss.per_row), kind="ratio", transform=perplexity),
    }
    settings = (
        {} if suite.source is None else {"source": suite.source, "rows": len(rows), "tokens": loss.tokens}
    )
    return SuiteResult(found, items, [], settings)
