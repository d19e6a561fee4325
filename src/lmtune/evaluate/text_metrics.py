"""Text metrics of generated answers against references, each as per-item `ItemScores`.

ROUGE-L is rouge-score's (Google's reimplementation of ROUGE-1.5.5), BLEU and chrF are sacrebleu's
(the reference implementations the field reports). Corpus BLEU and chrF are not means of sentence
scores: each item keeps sacrebleu's sufficient statistics (n-gram matches and totals), and the corpus
score of any subset is computed from their sum, as sacrebleu's own paired bootstrap test does. Token F1
is SQuAD's (normalise, then bag-of-tokens precision and recall), which has no maintained package that
runs offline.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

from lmtune.evaluate.stats import ItemScores
from lmtune.runtime.answers import FORMAT_RE, normalize_number, normalize_text, numbers_in

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)

FILTERS = {
    "flexible": "the number after the last `####`, else the last number in the answer",
    "strict": "only the number after the last `####` (no marker: no answer)",
}
"""What each `answer_filter` extracts (written into the result)."""


def squad_tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces; then split."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 of one prediction (1.0 when both normalise to nothing)."""
    pred, ref = squad_tokens(prediction), squad_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def extract_number(text: str, answer_filter: str) -> str | None:
    """The number `answer_filter` takes from `text` (see `FILTERS`)."""
    marked = FORMAT_RE.findall(text)
    if marked:
        return normalize_number(marked[-1])
    if answer_filter == "strict":
        return None
    numbers = numbers_in(text)
    return numbers[-1] if numbers else None


@cache
def _rouge() -> Any:
    # deferred: rouge-score (and nltk under it) only when a suite scores ROUGE
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


@cache
def _sacrebleu(name: str) -> Any:
    # deferred: sacrebleu only when a suite scores BLEU or chrF
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(effective_order=True) if name == "bleu" else CHRF()


def corpus_score(name: str, stats: Sequence[Sequence[float]]) -> float | None:
    """sacrebleu's corpus `name` (bleu | chrf) from the summed sufficient statistics of the items."""
    if not stats:
        return None
    summed = [sum(column) for column in zip(*stats, strict=True)]
    return float(_sacrebleu(name)._compute_score_from_stats(summed).score)


def score_answers(
    predictions: Sequence[str], references: Sequence[str], scores: Sequence[str], answer_filter: str
) -> tuple[dict[str, ItemScores], list[dict[str, Any]]]:
    """Each of `scores` over the answers, and one row per item with its own values.

    Returns:
        ({score: ItemScores}, [{score: the item's value (a sentence-level score for bleu/chrf)}, ...]).
    """
    rows: list[dict[str, Any]] = [{} for _ in predictions]
    out: dict[str, ItemScores] = {}
    pairs = list(zip(predictions, references, strict=True))
    for name in scores:
        match name:
            case "exact_match":
                values: list[Any] = [float(normalize_text(p) == normalize_text(r)) for p, r in pairs]
            case "numeric_match":
                values = []
                for row, (p, r) in zip(rows, pairs, strict=True):
                    want, got = extract_number(r, "flexible"), extract_number(p, answer_filter)
                    row["reference_number"], row["predicted_number"] = want, got
                    values.append(None if want is None else float(got == want))
            case "token_f1":
                values = [token_f1(p, r) for p, r in pairs]
            case "rouge_l":
                values = [float(_rouge().score(r, p)["rougeL"].fmeasure) for p, r in pairs]
            case "bleu" | "chrf":
                metric = _sacrebleu(name)
                stats = metric._extract_corpus_statistics(list(predictions), [list(references)])
                out[name] = ItemScores(
                    [list(map(float, s)) for s in stats], kind="corpus", corpus=_corpus(name)
                )
                for row, (p, r) in zip(rows, pairs, strict=True):
                    row[name] = float(metric.sentence_score(p, [r]).score)
                continue
            case _:
                raise ValueError(f"unknown generation score {name!r}")
        out[name] = ItemScores(values)
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return out, rows


def _corpus(name: str) -> Any:
    return lambda stats: corpus_score(name, stats)
