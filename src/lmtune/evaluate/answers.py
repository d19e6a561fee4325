"""What the suites share: the held-out examples, a model's answers to them (generated once, shared by
every suite that scores them), and what one suite returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmtune.data.formats.preference import with_system
from lmtune.evaluate import metrics
from lmtune.evaluate.stats import ItemScores
from lmtune.evaluate.tasks import read_task_file
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
class TaskAnswer:
    """One item and the model's answer to it."""

    messages: list[Message]
    reference: str
    prompt: str
    """The rendered prompt."""
    completion: Completion


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
    system_prompt: str | None = None
    """The run's system prompt (`data.system_prompt`), put in front of every prompt that has none."""
    _scored: tuple[list[str], list[Completion], list[metrics.Score]] | None = field(default=None, repr=False)

    def scored(self) -> tuple[list[str], list[Completion], list[metrics.Score]]:
        """(prompts, answers, scores) of the sampled examples."""
        if self._scored is None:
            sampled = self.examples[: self.cfg.max_samples]
            prompts, answers = self.answer([e.prompt_messages for e in sampled], "held-out")
            scores = [metrics.score(g.text, e.reference) for g, e in zip(answers, sampled, strict=True)]
            self._scored = (prompts, answers, scores)
        return self._scored

    def task_answers(self, path: str | None, limit: int | None, what: str) -> list[TaskAnswer]:
        """Greedy answers to the first `limit` items (default `cfg.max_samples`) of a task file, or of
        the held-out split when `path` is None (the shared held-out answers)."""
        limit = limit or self.cfg.max_samples
        if path is None:
            prompts, completions, _ = self.scored()
            items = [(e.prompt_messages, e.reference) for e in self.examples[: len(completions)]]
        else:
            task = read_task_file(path)[:limit]
            items = [(t.messages, t.reference) for t in task]
            prompts, completions = self.answer([t.messages for t in task], what)
        return [
            TaskAnswer(messages, reference, prompt, completion)
            for (messages, reference), prompt, completion in list(
                zip(items, prompts, completions, strict=True)
            )[:limit]
        ]

    def with_system(self, messages: list[Message]) -> list[Message]:
        """`messages` with the run's system prompt in front, unless they have a system turn."""
        return with_system(messages, self.system_prompt)

    def answer(
        self, conversations: list[list[Message]], what: str, max_new_tokens: int | None = None
    ) -> tuple[list[str], list[Completion]]:
        """Greedy answers to `conversations` (rendered prompts, completions), each at most
        `max_new_tokens` long (default `cfg.max_new_tokens`)."""
        prompts = [render_prompt(self.tokenizer, self.with_system(c)) for c in conversations]
        answers = greedy_generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
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
