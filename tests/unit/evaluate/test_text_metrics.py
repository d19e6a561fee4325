"""Generation metrics: each equals its library's own computation, per item and over the corpus."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from lmtune.evaluate.text_metrics import corpus_score, extract_number, score_answers, token_f1

PREDICTIONS = [
    "The cat sat on the mat.",
    "So 6 + 6 = 12 apples. #### 12",
    "hello world",
    "a dog barked loudly",
]
REFERENCES = ["A cat sat on a mat", "#### 12", "hello there world", "the dog barked"]
ALL = ["exact_match", "numeric_match", "token_f1", "rouge_l", "bleu", "chrf"]


def test_token_f1_is_squads() -> None:
    assert token_f1("The cat sat on the mat.", "a cat sat on a mat") == 1.0  # articles, case, punctuation
    assert token_f1("hello world", "hello there world") == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a b", "c d") == 0.0


def test_numeric_filters() -> None:
    assert extract_number("so it is 5, then 7 #### 1,200", "strict") == "1200"
    assert extract_number("so it is 5, then 7", "strict") is None
    assert extract_number("so it is 5, then 7", "flexible") == "7"


def test_scores_equal_the_libraries() -> None:
    items, rows = score_answers(PREDICTIONS, REFERENCES, ALL, "flexible")
    assert list(items) == ALL
    assert items["bleu"].aggregate() == pytest.approx(
        BLEU(effective_order=True).corpus_score(PREDICTIONS, [REFERENCES]).score
    )
    assert items["chrf"].aggregate() == pytest.approx(CHRF().corpus_score(PREDICTIONS, [REFERENCES]).score)
    rouge = rouge_scorer.RougeScorer(["rougeL"])
    want = [rouge.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    assert items["rouge_l"].values == pytest.approx(want)
    assert items["exact_match"].values == [0.0, 0.0, 0.0, 0.0]
    assert items["numeric_match"].values == [None, 1.0, None, None]  # only numeric references count
    assert items["numeric_match"].aggregate() == 1.0
    assert rows[1]["predicted_number"] == "12" and rows[2]["token_f1"] == pytest.approx(0.8)
    assert rows[0]["bleu"] == pytest.approx(
        BLEU(effective_order=True).sentence_score(PREDICTIONS[0], [REFERENCES[0]]).score
    )


def test_corpus_scores_of_a_subset_come_from_summed_statistics() -> None:
    items, _ = score_answers(PREDICTIONS, REFERENCES, ["bleu", "chrf"], "flexible")
    for name, metric in (("bleu", BLEU(effective_order=True)), ("chrf", CHRF())):
        subset = [0, 2, 2, 3]  # a bootstrap draw: items repeat
        got = items[name].aggregate([items[name].values[i] for i in subset])
        want = metric.corpus_score([PREDICTIONS[i] for i in subset], [[REFERENCES[i] for i in subset]]).score
        assert got == pytest.approx(want)
    assert corpus_score("bleu", []) is None


def test_an_unknown_score_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown generation score 'meteor'"):
        score_answers(["a"], ["a"], ["meteor"], "flexible")
