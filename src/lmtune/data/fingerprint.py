"""The data fingerprint recorded in lineage.json: which examples, under which tokenizer and template."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What about a tokenizer changes the prepared ids: its name (folder name, not the full path), size,
    special tokens and chat template."""
    return {
        "name": Path(str(tokenizer.name_or_path)).name,
        "vocab_size": len(tokenizer),
        "eos": tokenizer.eos_token,
        "bos": tokenizer.bos_token,
        "chat_template": tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    }


def fingerprint(records: Iterable[Any], settings: dict[str, Any]) -> str:
    """sha256 over `settings` then each accepted normalised record, as canonical JSON (sorted keys)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for record in records:
        digest.update(b"\n")
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()
