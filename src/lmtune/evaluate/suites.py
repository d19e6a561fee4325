"""The evaluation suites (configs: `lmtune.config.suites`), each run on one model through one
exhaustive `match` (`run_suite`). Suites that score answers to the held-out prompts share one
generation pass per model (`Answers`). Every suite returns per-item scores beside its metrics, so
base and tuned can be compared item by item (`lmtune.evaluate.stats`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

from lmtune.config.suites import (
    AnySuite,
    ExactMatchSuite,
    FormatComplianceSuite,
    GenerationSuite,
    MultipleChoiceSuite,
    PerplexitySuite,
)
from lmtune.evaluate import metrics
from lmtune.evaluate.choice import expected_calibration_error, score_choices
from lmtune.evaluate.choice_sets import read_choice_set
from lmtune.evaluate.loss import eval_loss, perplexity
from lmtune.evaluate.stats import ItemScores
from lmtune.evaluate.tasks import read_task_file
from lmtune.evaluate.text_metrics import FILTERS, score_answers
from lmtune.runtime.generation import Completion, Message, greedy_generate, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmtune.config.deploy import EvaluateConfig

Metrics = dict[str, float | int | None]


@dataclass(frozen=True)
class SuiteResult:
    """What one suite measured on one model."""

    metrics: Metrics
    items: dict[str, ItemScores] = field(default_factory=dict)
    """Per-item scores of each compared metric (what the paired bootstrap resamples)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One record per item (prompt, reference, prediction, its scores), for the per-item drill-down."""
    settings: dict[str, Any] = field(default_factory=dict)
    """How the suite scored (task file, items, answer filter), written into the result."""


@dataclass(frozen=True)
class EvalExample:
    """One held-out example: tokenised for the loss, and as a conversation for generation."""

    tokens: dict[str, list[int]]
    prompt_messages: list[Message]
    reference: str


@dataclass
class Answers:
    """The model, its examples, and its greedy answers to the first `cfg.max_samples` (generated the
    first time a suite asks, then shared)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    examples: list[EvalExample]
    cfg: EvaluateConfig
    stops: list[int]
    label: str
    _scored: tuple[list[str], list[Completion], list[metrics.Score]] | None = field(default=None, repr=False)

    def scored(self) -> tuple[list[str], list[Completion], list[metrics.Score]]:
        """(prompts, answers, scores) of the sampled examples."""
        if self._scored is None:
            sampled = self.examples[: self.cfg.max_samples]
            prompts, answers = self.answer([e.prompt_messages for e in sampled], "held-out")
            scores = [metrics.score(g.text, e.reference) for g, e in zip(answers, sampled, strict=True)]
            self._scored = (prompts, answers, scores)
        return self._scored

    def answer(self, conversations: list[list[Message]], what: str) -> tuple[list[str], list[Completion]]:
        """Greedy answers to `conversations` (rendered prompts, completions)."""
        prompts = [render_prompt(self.tokenizer, c) for c in conversations]
        answers = greedy_generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=self.cfg.max_new_tokens,
            batch_size=self.cfg.batch_size,
            stop_ids=self.stops,
            desc=f"generate {what} ({self.label})",
        )
        return prompts, answers

    def predictions(self) -> list[dict[str, Any]]:
        """One row per scored answer (empty when no suite generated)."""
        if self._scored is None:
            return []
        prompts, answers, scores = self._scored
        return [
            {
                "prompt": prompt,
                "reference": e.reference,
                "prediction": g.text,
                "reference_answer": s.reference_answer,
                "predicted_answer": s.predicted_answer,
                "correct": s.correct,
                "has_format": s.has_format,
            }
            for prompt, e, g, s in zip(prompts, self.examples, answers, scores, strict=False)
        ]


def run_suite(suite: AnySuite, answers: Answers) -> SuiteResult:
    """What one suite measures on `answers.model` (the one exhaustive dispatch)."""
    match suite:
        case PerplexitySuite():
            tok = answers.tokenizer
            pad_id = tok.pad_token_id if tok.pad_token_id is not None else answers.stops[0]
            loss = eval_loss(
                answers.model,
                [e.tokens for e in answers.examples],
                batch_size=answers.cfg.batch_size,
                pad_id=pad_id,
            )
            return SuiteResult(
                {"eval_loss": loss.loss, "perplexity": loss.perplexity, "eval_tokens": loss.tokens},
                {
                    "eval_loss": ItemScores(list(loss.per_row), kind="ratio"),
                    "perplexity": ItemScores(list(loss.per_row), kind="ratio", transform=perplexity),
                },
            )
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
        case _:
            assert_never(suite)


def _generation(suite: GenerationSuite, answers: Answers) -> SuiteResult:
    """Greedy answers to the suite's task file (or the held-out prompts), scored by its text metrics."""
    limit = suite.max_samples or answers.cfg.max_samples
    if suite.path is None:
        prompts, completions, _ = answers.scored()
        references = [e.reference for e in answers.examples[: len(completions)]][:limit]
        prompts, completions = prompts[:limit], completions[:limit]
    else:
        items = read_task_file(suite.path)[:limit]
        prompts, completions = answers.answer([i.messages for i in items], suite.name)
        references = [i.reference for i in items]
    predictions = [c.text for c in completions]
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
    # prompt-learning adapters (prompt, prefix tuning) prepend virtual tokens: no shared prompt cache
    full_rows = bool(getattr(getattr(answers.model, "active_peft_config", None), "is_prompt_learning", False))
    scores = score_choices(
        answers.model,
        answers.tokenizer,
        scored,
        shots,
        full_rows=full_rows,
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
