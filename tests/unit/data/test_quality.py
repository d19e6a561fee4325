"""Quality filters: each one's reject reason and detail, the thresholds, and the language filter (lingua,
offline); on real GSM8K and chatterbot text the filters (English kept) remove almost nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lmtune.config.curation import QualityConfig
from lmtune.data.curation import quality
from lmtune.errors import ConfigError, DataError

ON = QualityConfig(enabled=True)


def chat(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def test_a_normal_record_passes_every_filter() -> None:
    record = chat("How many legs does a spider have?", "A spider has eight legs.\nInsects have six.")
    assert quality.check(record, False, QualityConfig(enabled=True, languages=["en"])) is None


def test_too_short_and_too_long_chars() -> None:
    cfg = QualityConfig(enabled=True, min_response_chars=5, max_chars=60)
    assert quality.check(chat("hello?", " ok  "), False, cfg) == (
        "too_short",
        "response has 2 characters (min_response_chars 5)",
    )
    assert quality.check(chat("x" * 50, "fine answer"), False, cfg) == (
        "too_long_chars",
        "record has 61 characters (max_chars 60)",
    )
    # a text record is its own response
    assert quality.check([{"role": "user", "content": "abc"}], True, cfg) == (
        "too_short",
        "response has 3 characters (min_response_chars 5)",
    )


def test_repetitive_ngrams_and_lines() -> None:
    looped = "I think so. " * 12
    reason, detail = quality.check(chat("really?", looped), False, ON) or ("", "")
    assert reason == "repetitive"
    # 36 words, 34 trigrams, 3 distinct: 1 - 3/34 = 91%
    assert detail == "91% of the response's word 3-grams are repeats (max_duplicate_ngram_fraction 0.5)"
    lines = "\n".join(["- buy milk", "- buy milk", "- buy eggs", "- buy milk", "- buy milk"])
    assert quality.check(chat("list?", lines), False, ON) == (
        "repetitive",
        "the line '- buy milk' is 80% of the response's lines (max_repeated_line_fraction 0.5)",
    )
    assert quality.duplicate_ngram_fraction("a b c a b c", 3) == pytest.approx(1 - 3 / 4)
    # longer n-grams repeat less: with repetition_ngram 8 the same loop is judged on 8-grams
    eight = QualityConfig(enabled=True, repetition_ngram=8, max_duplicate_ngram_fraction=0.9)
    assert quality.duplicate_ngram_fraction(looped, 8) == pytest.approx(1 - 3 / 29)
    assert quality.check(chat("really?", looped), False, eight) is None
    assert quality.repeated_line_fraction("a\n\nb\na\n") == (pytest.approx(2 / 3), "a")
    # under 20 words the n-gram share is not judged; switched off it never is
    assert quality.check(chat("q", "yes yes yes yes yes yes"), False, ON) is None
    off = QualityConfig(enabled=True, max_duplicate_ngram_fraction=None, max_repeated_line_fraction=None)
    assert quality.check(chat("really?", looped), False, off) is None


@pytest.mark.parametrize(
    "answer",
    [
        "As an AI language model, I cannot browse the internet.",
        "I'm sorry, but I can't help with that.",
        "I cannot assist with this request.",
        "Unfortunately, I am unable to provide that information.",
        "I'm just an AI, I don't have feelings.",
    ],
)
def test_boilerplate_answers(answer: str) -> None:
    verdict = quality.check(chat("question", answer), False, ON)
    assert verdict is not None and verdict[0] == "boilerplate"


@pytest.mark.parametrize(
    "answer",
    [
        "I cannot wait to see the eclipse, it will be great.",
        "The model can't help but overfit on small data; use regularisation.",
        "Sorry to hear that! Here is how to reset your password: open settings.",
    ],
)
def test_answers_that_only_look_like_boilerplate(answer: str) -> None:
    assert quality.check(chat("question", answer), False, ON) is None


def test_language_filter() -> None:
    cfg = QualityConfig(enabled=True, languages=["en"])
    german = chat("Wie viel kostet das Brot heute?", "Das Brot kostet heute zwei Euro und fünfzig Cent.")
    assert quality.check(german, False, cfg) == ("wrong_language", "detected language de (kept: en)")
    assert quality.check(german, False, QualityConfig(enabled=True, languages=["en", "de"])) is None
    assert quality.check(chat("Wie?", "Gut."), False, cfg) is None  # under language_min_chars: not judged
    mixed = chat(
        "Wie viel kostet das Brot heute beim Bäcker, bitte?",
        "The bread costs two euros and fifty cents today.",
    )
    assert quality.check(mixed, False, cfg.model_copy(update={"language_text": "responses"})) is None
    assert quality.check(mixed, False, cfg.model_copy(update={"language_text": "prompts"})) == (
        "wrong_language",
        "detected language de (kept: en)",
    )


def test_language_codes_are_checked() -> None:
    with pytest.raises(ValueError, match="pattern"):
        QualityConfig(languages=["english"])
    with pytest.raises(ConfigError, match="'qq' is not an ISO 639-1 code lingua knows"):
        quality.detect_language("some text here", ("qq",))


@pytest.mark.real
def test_filters_keep_real_gsm8k_and_chatterbot(benchmark_module: Any) -> None:
    cm = benchmark_module("curation_support")
    try:
        records = cm.gsm8k_records() + cm.chatterbot_records()
    except DataError as exc:
        pytest.skip(str(exc))
    cfg = QualityConfig(enabled=True, languages=["en"])
    reasons = Counter()
    for r in records:
        verdict = quality.check(chat(r.prompt, r.response), False, cfg)
        if verdict:
            reasons[verdict[0]] += 1
    assert sum(reasons.values()) <= 0.005 * len(records), reasons
    assert set(reasons) <= {"wrong_language"}  # a French exchange in chatterbot; no false boilerplate
