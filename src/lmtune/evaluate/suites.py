"""The evaluation suites (configs: `lmtune.config.suites`), each run on one model through one
exhaustive `match` (`run_suite`). Suites that score generated answers share one generation pass per
model (`Answers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

from lmtune.config.suites import AnySuite, ExactMatchSuite, FormatComplianceSuite, PerplexitySuite
from lmtune.evaluate import metrics
from lmtune.evaluate.loss import eval_loss
from lmtune.runtime.generation import Completion, Message, greedy_generate, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmtune.config.deploy import EvaluateConfig

Metrics = dict[str, float | int | None]


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
            prompts = [render_prompt(self.tokenizer, e.prompt_messages) for e in sampled]
            answers = greedy_generate(
                self.model,
                self.tokenizer,
                prompts,
                max_new_tokens=self.cfg.max_new_tokens,
                batch_size=self.cfg.batch_size,
                stop_ids=self.stops,
                desc=f"generate ({self.label})",
            )
            scores = [metrics.score(g.text, e.reference) for g, e in zip(answers, sampled, strict=True)]
            self._scored = (prompts, answers, scores)
        return self._scored

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


def run_suite(suite: AnySuite, answers: Answers) -> Metrics:
    """The metrics of one suite on `answers.model` (the one exhaustive dispatch)."""
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
            return {"eval_loss": loss.loss, "perplexity": loss.perplexity, "eval_tokens": loss.tokens}
        case ExactMatchSuite():
            return {"exact_match": metrics.exact_match(answers.scored()[2])}
        case FormatComplianceSuite():
            return {"format_compliance": metrics.format_compliance(answers.scored()[2])}
        case _:
            assert_never(suite)
