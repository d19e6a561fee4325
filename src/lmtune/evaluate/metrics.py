"""Generation metrics as small pure functions: scoring one prediction against its reference (answer
extraction in `lmtune.runtime.answers`), exact match and format compliance over many."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmtune.runtime.answers import has_answer_format, normalize_text, predicted_answer, reference_answer


@dataclass(frozen=True)
class Score:
    """How one prediction compares with its reference."""

    reference_answer: str | None
    """Extracted numeric reference answer; None for a text reference."""
    predicted_answer: str | None
    """Extracted numeric prediction answer (None when the prediction has no number); for a text
    reference, the normalised prediction text."""
    correct: bool
    has_format: bool
    """Whether the prediction contains `#### <number>`."""
    reference_has_format: bool
    """Whether the reference contains `#### <number>` (format compliance counts only these)."""


def score(prediction: str, reference: str) -> Score:
    """Score one prediction: numeric exact match for numeric references, normalised text otherwise."""
    ref_num = reference_answer(reference)
    if ref_num is not None:
        pred: str | None = predicted_answer(prediction)
        correct = pred == ref_num
    else:
        pred = normalize_text(prediction)
        correct = pred == normalize_text(reference)
    return Score(
        reference_answer=ref_num,
        predicted_answer=pred,
        correct=correct,
        has_format=has_answer_format(prediction),
        reference_has_format=has_answer_format(reference),
    )


def exact_match(scores: Sequence[Score]) -> float | None:
    """Fraction of correct predictions; None for no predictions."""
    return sum(s.correct for s in scores) / len(scores) if scores else None


def format_compliance(scores: Sequence[Score]) -> float | None:
    """Fraction of predictions containing `#### <number>`, over the examples whose reference uses that
    format; None when no reference does (the format means nothing there)."""
    formatted = [s for s in scores if s.reference_has_format]
    return sum(s.has_format for s in formatted) / len(formatted) if formatted else None
