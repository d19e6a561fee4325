"""Text that perplexity is measured on, beside the run's held-out split: the packaged chatterbot corpus
(real English exchanges: the default general set of the forgetting check), a plain-text file, or a
JSONL file of `text` or `messages` rows, each turned into token rows for `eval_loss`.

Conversations are scored as training scores them: rendered with the chat template, loss on the
assistant turns only (`lmtune.data.encoding.template.encode_conversation`). Plain text is cut into
windows of `window` tokens, every token scored.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune.data.encoding.template import IGNORE, encode_conversation
from lmtune.data.formats.assets import CHATTERBOT, read_chatterbot
from lmtune.data.records import RawItem, RecordRejected
from lmtune.errors import DataError
from lmtune.evaluate.jsonl import read_rows

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Row = dict[str, list[int]]


def conversations(source: str) -> list[list[dict[str, str]]] | None:
    """The conversations of `source` (`chatterbot` or a JSONL of `messages`), or None for text sources."""
    if source == CHATTERBOT:
        found = []
        for item in read_chatterbot():
            if isinstance(item, RawItem):
                turns = [t for t in item.value["messages"] if isinstance(t["content"], str)]
                if len(turns) % 2:  # an exchange ending on the user: drop the unanswered turn
                    turns = turns[:-1]
                if turns:
                    found.append(turns)
        return found
    path = Path(source)
    if path.suffix == ".jsonl":
        rows = read_rows(path, "text")
        if all("messages" in r for _, r in rows):
            return [r["messages"] for _, r in rows]
    return None


def texts(source: str) -> list[str]:
    """The documents of a text source: a .txt file (one document) or a JSONL of `text` rows."""
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: text file not found (or use `chatterbot`)")
    if path.suffix != ".jsonl":
        return [path.read_text(encoding="utf-8")]
    out = []
    for n, row in read_rows(path, "text"):
        if not isinstance(row.get("text"), str):
            raise DataError(f"{path}:{n}: field 'text' must be a string (or give every row `messages`)")
        out.append(row["text"])
    return out


def token_rows(
    source: str, tokenizer: PreTrainedTokenizerBase, *, limit: int | None, window: int, seed: int = 0
) -> list[Row]:
    """Rows of input_ids / labels / attention_mask for `eval_loss`: up to `limit` conversations (a seeded
    sample when there are more) or text windows."""
    chats = conversations(source)
    rows: list[Row] = []
    if chats is not None:
        if limit is not None and len(chats) > limit:
            chats = random.Random(seed).sample(chats, limit)
        for chat in chats:
            try:
                enc = encode_conversation(tokenizer, chat)
            except RecordRejected:
                continue
            ids, labels = enc.input_ids[:window], enc.labels[:window]
            if any(label != IGNORE for label in labels[1:]):
                rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
        return rows
    for text in texts(source):
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        for start in range(0, len(ids), window):
            piece = ids[start : start + window]
            if len(piece) > 1:
                rows.append({"input_ids": piece, "labels": list(piece), "attention_mask": [1] * len(piece)})
    return rows[:limit] if limit is not None else rows
