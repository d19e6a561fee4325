"""Heuristic quality filters for one record; each returns the reject reason and a detail, or None.

- `too_short`: the response (assistant turns, stripped) has fewer than `min_response_chars` characters.
- `too_long_chars`: the whole record has more than `max_chars` characters (token length is checked at
  encoding against `data.max_length`, reason `too_long`).
- `repetitive`: in the response, the share of word n-grams that repeat an earlier n-gram,
  `1 - distinct / total`, exceeds `max_duplicate_ngram_fraction` (responses of 20 words or more), or the
  most frequent non-empty line takes more than `max_repeated_line_fraction` of the lines (4 lines or more).
- `boilerplate`: the response is an AI disclaimer anywhere ("as an AI language model") or opens with a
  refusal ("I'm sorry, but I can't", "I cannot help with that") and is short (under 300 characters).
- `wrong_language`: lingua's most likely language (among the kept ones and 20 widely used others) is not
  one of `languages`; texts under `language_min_chars` are not judged.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lmtune.config.curation import QualityConfig
from lmtune.data.curation.text import ngrams, select_text, words
from lmtune.data.records import Conversation, RejectReason
from lmtune.errors import ConfigError

if TYPE_CHECKING:
    from lingua import LanguageDetector

_MIN_WORDS_FOR_NGRAMS = 20
_MIN_LINES = 4
_REFUSAL_MAX_CHARS = 300

_DISCLAIMER = re.compile(
    r"\bas an ai(?: language model| assistant| model)?\b[^.]{0,40}\b(?:i (?:do not|don't|cannot|can't|am "
    r"(?:not|unable))|i have no)"
    r"|\bas an? (?:large )?language model\b"
    r"|\bi(?: am|'m) (?:just )?an? ai(?: language model)?\b[^.]{0,20}"
    r"\b(?:cannot|can't|do not|don't|not able)",
    re.IGNORECASE,
)
_REFUSAL_OPENING = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry|unfortunately|i apologi[sz]e)?[, ]*(?:but )?"
    r"(?:i (?:cannot|can't|can not|am unable to|am not able to|won't|will not) "
    r"(?:help|assist|provide|comply|fulfil|fulfill|do that|answer|generate|create|write))",
    re.IGNORECASE,
)

WIDELY_USED = ("en", "zh", "es", "hi", "ar", "pt", "ru", "ja", "de", "fr", "it", "ko", "tr", "vi", "pl",
               "nl", "id", "fa", "uk", "sv")  # fmt: skip
"""Languages always among the candidates, so a text in one of them is not forced onto a kept language."""


def check(messages: Conversation, is_text: bool, cfg: QualityConfig) -> tuple[RejectReason, str] | None:
    """The first filter `messages` fails, as (reason, detail), or None when it passes them all."""
    response = select_text(messages, "responses", is_text).strip()
    if len(response) < cfg.min_response_chars:
        return (
            "too_short",
            f"response has {len(response)} characters (min_response_chars {cfg.min_response_chars})",
        )
    total = sum(len(t["content"]) for t in messages)
    if cfg.max_chars is not None and total > cfg.max_chars:
        return "too_long_chars", f"record has {total} characters (max_chars {cfg.max_chars})"
    found = _repetition(response, cfg)
    if found is not None:
        return "repetitive", found
    if cfg.boilerplate:
        found = boilerplate(response)
        if found is not None:
            return "boilerplate", f"response {found}"
    if cfg.languages:
        text = select_text(messages, cfg.language_text, is_text)
        if len(text.strip()) >= cfg.language_min_chars:
            lang = detect_language(text, tuple(cfg.languages))
            if lang not in cfg.languages:
                return (
                    "wrong_language",
                    f"detected language {lang or 'unknown'} (kept: {', '.join(cfg.languages)})",
                )
    return None


def duplicate_ngram_fraction(text: str, n: int) -> float:
    """`1 - distinct / total` over the word n-grams of `text` (0 when it has none)."""
    grams = ngrams(words(text), n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def repeated_line_fraction(text: str) -> tuple[float, str]:
    """Share of the non-empty lines taken by the most frequent one, and that line (0 and "" if none)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0, ""
    line, count = Counter(lines).most_common(1)[0]
    return count / len(lines), line


def boilerplate(response: str) -> str | None:
    """What makes `response` boilerplate ("is an AI disclaimer: ..." / "opens with a refusal: ..."),
    or None."""
    m = _DISCLAIMER.search(response)
    if m is not None:
        return f"is an AI disclaimer: '{m.group(0)}'"
    if len(response) < _REFUSAL_MAX_CHARS:
        m = _REFUSAL_OPENING.search(response)
        if m is not None:
            return f"opens with a refusal: '{m.group(0).strip()}'"
    return None


def detect_language(text: str, kept: tuple[str, ...]) -> str | None:
    """ISO 639-1 code (lower case) of the most likely language of `text`, or None when undecided.

    Raises:
        ConfigError: a code in `kept` that lingua does not know.
    """
    language = _detector(kept).detect_language_of(text)
    return None if language is None else language.iso_code_639_1.name.lower()


@lru_cache(maxsize=4)
def _detector(kept: tuple[str, ...]) -> LanguageDetector:
    # deferred: lingua only when this runs (keeps `import lmtune...` light)
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = []
    for code in dict.fromkeys((*kept, *WIDELY_USED)):
        iso: Any = getattr(IsoCode639_1, code.upper(), None)
        if iso is None:
            raise ConfigError(
                f"data.curation.quality.languages: '{code}' is not an ISO 639-1 code lingua knows"
            )
        codes.append(iso)
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()


def _repetition(response: str, cfg: QualityConfig) -> str | None:
    if cfg.max_duplicate_ngram_fraction is not None and len(words(response)) >= _MIN_WORDS_FOR_NGRAMS:
        share = duplicate_ngram_fraction(response, cfg.repetition_ngram)
        if share > cfg.max_duplicate_ngram_fraction:
            return (
                f"{share:.0%} of the response's word {cfg.repetition_ngram}-grams are repeats "
                f"(max_duplicate_ngram_fraction {cfg.max_duplicate_ngram_fraction})"
            )
    if cfg.max_repeated_line_fraction is not None:
        lines = [line for line in response.splitlines() if line.strip()]
        if len(lines) >= _MIN_LINES:
            share, line = repeated_line_fraction(response)
            if share > cfg.max_repeated_line_fraction:
                return (
                    f"the line '{line[:60]}' is {share:.0%} of the response's lines "
                    f"(max_repeated_line_fraction {cfg.max_repeated_line_fraction})"
                )
    return None
