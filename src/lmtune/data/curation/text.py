"""The text a curation step looks at: which turns, and the normalised word sequence compared."""

from __future__ import annotations

import re
import unicodedata

from lmtune.config.curation import CurationText
from lmtune.data.records import Conversation

_NON_WORD = re.compile(r"[^\w]+")


def select_text(messages: Conversation, which: CurationText, is_text: bool = False) -> str:
    """Join the turns a step looks at with newlines.

    Args:
        messages: the normalised conversation.
        which: `conversation` (every turn), `prompts` (system and user turns) or `responses` (assistant
            turns).
        is_text: a plain-text record (one turn, trained on whole): it is its own prompt and response.
    """
    if is_text or which == "conversation":
        return "\n".join(t["content"] for t in messages)
    wanted = {"assistant"} if which == "responses" else {"system", "user"}
    return "\n".join(t["content"] for t in messages if t["role"] in wanted)


def words(text: str) -> list[str]:
    """The normalised words of `text`: NFKC, case-folded, split on anything that is not a letter, digit
    or underscore (so punctuation, spacing and case differences disappear)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w for w in _NON_WORD.split(folded) if w]


def ngrams(tokens: list[str], n: int) -> list[str]:
    """The word n-grams of `tokens`, each joined by one space (none when there are fewer than n words)."""
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
