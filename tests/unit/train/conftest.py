"""Fixtures for the training tests: chat rows built directly with the tiny tokenizer, and tiny run configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.loader import build
from lmtune.config.run import RunConfig

CHATS = [
    [
        {"role": "user", "content": f"she has {a} apples and buys {b} more. how many apples?"},
        {"role": "assistant", "content": f"she has {a + b} apples. #### {a + b}"},
    ]
    for a, b in [(1, 2), (3, 4), (5, 1), (2, 7), (6, 3), (8, 1), (4, 4), (9, 2)]
]


def encode_chat(tokenizer: Any, chat: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """ids and labels for a user/assistant chat: only the assistant content and its `<|im_end|>` train."""
    prompt = tokenizer.apply_chat_template(chat[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(chat, tokenize=False)
    assert full.startswith(prompt) and full.endswith("<|im_end|>\n")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) : -1], add_special_tokens=False)["input_ids"]  # up to <|im_end|>
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    ids = prompt_ids + answer_ids + newline
    labels = [-100] * len(prompt_ids) + answer_ids + [-100] * len(newline)
    return ids, labels


@pytest.fixture
def make_rows(tiny_tokenizer: Any) -> Callable[..., Any]:
    """`make_rows(n)` -> a datasets.Dataset of `n` encoded chats (input_ids, labels, attention_mask)."""
    from datasets import Dataset

    def make(n: int = len(CHATS)) -> Dataset:
        rows = [encode_chat(tiny_tokenizer, CHATS[i % len(CHATS)]) for i in range(n)]
        return Dataset.from_dict(
            {
                "input_ids": [ids for ids, _ in rows],
                "labels": [labels for _, labels in rows],
                "attention_mask": [[1] * len(ids) for ids, _ in rows],
            }
        )

    return make


@pytest.fixture
def chats_file(tmp_path: Path) -> Path:
    """A JSONL file of 40 chats in the `messages` format."""
    path = tmp_path / "chats.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(40):
            f.write(json.dumps({"messages": CHATS[i % len(CHATS)]}) + "\n")
    return path


@pytest.fixture
def run_config(tmp_path: Path, tiny_model_dir: Path, chats_file: Path) -> Callable[..., RunConfig]:
    """`run_config(**sections)` -> a RunConfig for a short run of the tiny model on `chats_file`; a section
    given is merged into the default one (`method` is replaced)."""

    def make(**overrides: Any) -> RunConfig:
        data: dict[str, Any] = {
            "name": "r",
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(tiny_model_dir)},
            "data": {"sources": [{"path": str(chats_file)}], "max_length": 64, "eval_size": 4},
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {
                "max_steps": 6,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "logging_steps": 2,
                "save_steps": 3,
                "device": "cpu",
            },
        }
        for key, value in overrides.items():
            merge = isinstance(value, dict) and key in data and key != "method"
            data[key] = {**data[key], **value} if merge else value
        return build(RunConfig, data)

    return make
