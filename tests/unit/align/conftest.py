"""Alignment fixtures: small preference / prompt files in the stage-1 formats."""

import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 preference pairs (the chosen answer has the right sum), plus 2 broken ones that are rejected."""
    rows: list[dict[str, object]] = [
        {
            "prompt": f"What is {i} plus {i}?",
            "chosen": f"The answer is {2 * i}.",
            "rejected": f"It is {2 * i + 1}.",
        }
        for i in range(24)
    ]
    rows.append({"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."})
    rows.append({"prompt": "Empty?", "chosen": "", "rejected": "No."})
    return write_jsonl(tmp_path_factory.mktemp("align_data") / "pairs.jsonl", rows)


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 prompts with a GSM8K-style reference answer, in the `prompt` format."""
    rows: list[dict[str, object]] = [
        {"prompt": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(16)
    ]
    return write_jsonl(tmp_path_factory.mktemp("prompts") / "prompts.jsonl", rows)


@pytest.fixture(scope="session")
def kto_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 labelled completions (right sums desirable, wrong ones not), in the `kto` format."""
    rows: list[dict[str, object]] = []
    for i in range(12):
        rows.append(
            {"prompt": f"What is {i} plus {i}?", "completion": f"The answer is {2 * i}.", "label": True}
        )
        rows.append({"prompt": f"What is {i} plus {i}?", "completion": f"It is {2 * i + 1}.", "label": False})
    return write_jsonl(tmp_path_factory.mktemp("kto") / "kto.jsonl", rows)
