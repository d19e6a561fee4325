"""Where a completion ends: the stop token ids of a chat tokenizer, and stop strings watched while text
streams out (`TextTracker`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lmtune.errors import LmtuneError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# End-of-turn markers of common chat templates. A chat model ends a reply with one of these, which is
# often not the tokenizer's document-level eos (Llama 3 ends turns with <|eot_id|>, eos is <|end_of_text|>).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token id that ends an assistant turn: a known end-of-turn marker that the chat template
    writes and the vocabulary holds, else eos."""
    vocab = tokenizer.get_vocab()
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    for token in END_OF_TURN_TOKENS:
        if token in vocab and token in template:
            return int(vocab[token])
    if tokenizer.eos_token_id is None:
        raise LmtuneError(
            "tokenizer has neither an end-of-turn token nor an eos token: cannot stop generation"
        )
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that end generation: the end-of-turn token, plus eos when that differs."""
    ids = [end_of_turn_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def stop_cut(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop string in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else None


def held_back(text: str, stop: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that could still grow into a stop string."""
    longest = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class TextTracker:
    """Decodes one growing completion and hands out only text that is final.

    Text is held back while it ends in an incomplete UTF-8 sequence or in a prefix of a stop string,
    so what has been handed out is always a prefix of the final, stop-trimmed completion.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], stop_ids: frozenset[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.stop_ids = stop_ids
        self.emitted = ""
        self.stopped = False
        """A stop string has appeared."""

    def decode(self, ids: Sequence[int]) -> str:
        """The completion text of generated `ids`: a final stop token is not part of it."""
        ids = list(ids[:-1] if ids and ids[-1] in self.stop_ids else ids)
        return str(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def final_text(self, ids: Sequence[int]) -> tuple[str, bool]:
        """(the completion text of `ids` cut before the first stop string, whether one was found)."""
        text = self.decode(ids)
        cut = stop_cut(text, self.stop)
        return (text, False) if cut is None else (text[:cut], True)

    def update(self, ids: Sequence[int]) -> str:
        """Take the full list of generated ids so far; return the newly final text (may be empty)."""
        text, self.stopped = self.final_text(ids)
        if not self.stopped:
            text = text[: len(text) - held_back(text, self.stop)]
        text = text.rstrip("\ufffd")
        if len(text) <= len(self.emitted) or not text.startswith(self.emitted):
            return ""
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta

    def rest(self, text: str) -> str:
        """What of the final `text` has not been handed out yet (marks it handed out)."""
        if len(text) <= len(self.emitted) or not text.startswith(self.emitted):
            return ""
        delta = text[len(self.emitted) :]
        self.emitted = text
        return delta
