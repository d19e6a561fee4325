"""The request prompt of `lmtune data synthesize` and the parser of its answers.

Each request shows `shots` seed examples as `Instruction: ...` / `Answer: ...` blocks and asks for one new
block in the same format; `parse_completion` takes the first such block of a completion (the labels may
carry markdown such as `**Instruction:**` or `### Answer:`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lmtune.data.records import Location

PROMPT_VERSION = 1
"""Bumped when the request prompt changes (it is part of the settings a resume must match)."""
SYSTEM_PROMPT = (
    "You write new training examples for an AI assistant. Each example is an instruction and its answer."
)
_ASK = (
    "Write one new example of the same kind: a different instruction on a similar topic and of similar "
    "difficulty, and its correct answer. Reply in exactly this format and nothing else:\n"
    "Instruction: <the new instruction>\nAnswer: <its answer>"
)
# A label at the start of a line, also as markdown ("**Instruction:**", "### Answer:").
_INSTRUCTION = re.compile(
    r"^[ \t>#*_]*instruction[ \t]*[*_]*[ \t]*:[*_]*[ \t]*", re.IGNORECASE | re.MULTILINE
)
_ANSWER = re.compile(r"^[ \t>#*_]*answer[ \t]*[*_]*[ \t]*:[*_]*[ \t]*", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Seed:
    """A seed example as shown in the prompts."""

    id: str
    """Where it was read (`file:line` or `file[index]`), listed in the provenance of what it inspired."""
    where: Location
    instruction: str
    answer: str


def build_messages(shots: Sequence[Seed]) -> list[dict[str, str]]:
    """The chat request for one new example: the shots as `Instruction:/Answer:` blocks, then the ask."""
    blocks = "\n\n".join(f"Instruction: {s.instruction}\nAnswer: {s.answer}" for s in shots)
    user = f"Here are {len(shots)} examples:\n\n{blocks}\n\n{_ASK}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_completion(text: str) -> tuple[str, str]:
    """The (instruction, answer) of the first `Instruction:/Answer:` block of a completion; the answer
    ends where a next `Instruction:` starts.

    Raises:
        ValueError: no such block, or an empty instruction or answer (the message says which).
    """
    start = _INSTRUCTION.search(text)
    if start is None:
        raise ValueError("no line starting with 'Instruction:'")
    label = _ANSWER.search(text, start.end())
    if label is None:
        raise ValueError("no line starting with 'Answer:' after the instruction")
    following = _INSTRUCTION.search(text, label.end())
    instruction = text[start.end() : label.start()].strip()
    answer = text[label.end() : following.start() if following else len(text)].strip()
    if not instruction:
        raise ValueError("the instruction is empty")
    if not answer:
        raise ValueError("the answer is empty")
    return instruction, answer


def choose_shots(seeds: Sequence[Seed], shots: int, seed: int, index: int) -> tuple[list[Seed], int]:
    """The seeds shown in request `index` and the `seed` sent with it (the same on every run)."""
    rng = random.Random(f"{seed}:{index}")
    return rng.sample(list(seeds), min(shots, len(seeds))), rng.randrange(2**31)
