"""The request prompt of `lmtune data synthesize` and the parser of its answers.

Each request shows `shots` seed examples as earlier turns of the chat (the ask, then the example as an
`Instruction: ...` / `Answer: ...` block from the assistant) and asks once more; `parse_completion` takes
the first such block of a completion (the labels may carry markdown: `**Instruction:**`, `### Answer:`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lmtune.data.records import Location

PROMPT_VERSION = 2
"""Bumped when the request prompt changes (it is part of the settings a resume must match)."""
SYSTEM_PROMPT = (
    "You write training examples for an AI assistant. Each example is an instruction and its correct "
    "answer, written as a line starting with 'Instruction:' and then a line starting with 'Answer:'."
)
ASK = (
    "Write one new example, different from the earlier ones, on a similar topic and of similar "
    "difficulty. Reply in exactly this format and nothing else:\nInstruction: <the instruction>\n"
    "Answer: <its answer>"
)
# A label at the start of a line, also plural or markdown ("Instructions:", "**Instruction:**", "### Answer:")
_LABEL = r"^[ \t>#*_]*{}s?[ \t]*[*_]*[ \t]*:[*_]*[ \t]*"
_INSTRUCTION = re.compile(_LABEL.format("instruction"), re.IGNORECASE | re.MULTILINE)
_ANSWER = re.compile(_LABEL.format("answer"), re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Seed:
    """A seed example as shown in the prompts."""

    id: str
    """Where it was read (`file:line` or `file[index]`), listed in the provenance of what it inspired."""
    where: Location
    instruction: str
    answer: str


def build_messages(shots: Sequence[Seed]) -> list[dict[str, str]]:
    """The chat request for one new example: each shot is an earlier exchange (the ask, then the shot as
    an `Instruction:/Answer:` block from the assistant), so even a small model sees the reply's format
    several times before it is asked once more."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for s in shots:
        messages.append({"role": "user", "content": ASK})
        messages.append({"role": "assistant", "content": f"Instruction: {s.instruction}\nAnswer: {s.answer}"})
    messages.append({"role": "user", "content": ASK})
    return messages


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
