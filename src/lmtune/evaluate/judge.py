"""LLM-as-judge through any OpenAI-compatible endpoint (`lmtune serve`, a local vLLM, a hosted API),
on the chat-completions client of the data stage (`lmtune.data.synthesis.client.ChatClient`: retries,
rate limit, clear errors).

- Single-answer grading (MT-Bench's format): the judge reads the rubric, the question, the reference
  when there is one, and the answer, and ends with `Rating: [[N]]` on a 1..scale scale; an item's score
  is N / scale (None when the judge wrote no rating).
- Pairwise comparison, positions swapped: each pair is judged twice, tuned as assistant A and then as
  B; it is a win (or a loss) only when both orders agree, a tie when both say tie, and inconsistent
  otherwise (counted, never a win).

Every judge prompt and raw output is kept in the results.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmtune.data.synthesis.client import ChatClient, greedy_client

SINGLE = (
    "Please act as an impartial judge and evaluate the response of an AI assistant to the question "
    "below.\n{rubric}\n{reference_block}"
    "Begin your evaluation with a short explanation. Then rate the response on a scale of 1 to {scale} "
    'by strictly following this format: "Rating: [[N]]".\n\n'
    "[Question]\n{question}\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)

PAIR = (
    "Please act as an impartial judge and compare the responses of two AI assistants to the question "
    "below.\n{rubric}\n{reference_block}"
    "Avoid any position bias: the order of the responses must not influence you. Begin with a short "
    'explanation, then output your verdict by strictly following this format: "[[A]]" if assistant A is '
    'better, "[[B]]" if assistant B is better, "[[C]]" for a tie.\n\n'
    "[Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]"
)

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


@dataclass(frozen=True)
class Judged:
    """One judge call: the prompt it read, what it wrote, and what was parsed from it."""

    prompt: str
    output: str
    value: Any


def reference_block(reference: str | None) -> str:
    return (
        ""
        if reference is None
        else f"A reference answer is given for comparison:\n[Reference]\n{reference}\n\n"
    )


def parse_rating(text: str, scale: int) -> float | None:
    """The last `[[N]]` of the judge's output, when 1 <= N <= scale."""
    found = _RATING.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if 1 <= value <= scale else None


def parse_verdict(text: str) -> str | None:
    """The last `[[A]]`, `[[B]]` or `[[C]]` of the judge's output."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def pair_outcome(tuned_first: str | None, tuned_second: str | None) -> str:
    """The pair's outcome for the tuned model from the two verdicts (tuned as A, then tuned as B)."""
    if tuned_first == "A" and tuned_second == "B":
        return "win"
    if tuned_first == "B" and tuned_second == "A":
        return "loss"
    if tuned_first == "C" and tuned_second == "C":
        return "tie"
    return "inconsistent"


class Judge:
    """A judge model behind an OpenAI-compatible endpoint, asked at temperature 0."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key_env: str | None,
        rubric: str,
        scale: int,
        max_tokens: int,
        timeout_s: float,
        client: ChatClient | None = None,
    ) -> None:
        self.client = client or greedy_client(
            endpoint, model, api_key_env=api_key_env, timeout_s=timeout_s, what="judge.api_key_env"
        )
        self.rubric, self.scale, self.max_tokens = rubric, scale, max_tokens

    def _ask(self, prompt: str) -> str:
        done = self.client.complete(
            [{"role": "user", "content": prompt}], {"temperature": 0, "max_tokens": self.max_tokens}
        )
        return done.text or ""

    def grade(self, question: str, answer: str, reference: str | None) -> Judged:
        prompt = SINGLE.format(
            rubric=self.rubric,
            reference_block=reference_block(reference),
            scale=self.scale,
            question=question,
            answer=answer,
        )
        output = self._ask(prompt)
        return Judged(prompt, output, parse_rating(output, self.scale))

    def compare(
        self, question: str, tuned: str, base: str, reference: str | None
    ) -> tuple[str, list[Judged]]:
        """The pair's outcome for `tuned`, and both judge calls (tuned as A, then as B)."""
        calls = []
        for a, b in ((tuned, base), (base, tuned)):
            prompt = PAIR.format(
                rubric=self.rubric, reference_block=reference_block(reference), question=question, a=a, b=b
            )
            output = self._ask(prompt)
            calls.append(Judged(prompt, output, parse_verdict(output)))
        return pair_outcome(calls[0].value, calls[1].value), calls

    def close(self) -> None:
        self.client.close()


def agreement(judged_correct: Sequence[bool | None], exact: Sequence[bool]) -> tuple[float | None, int]:
    """Share of items where the judge's verdict (rating above the middle of the scale) agrees with exact
    match, over the items the judge rated; and that count."""
    pairs = [(j, e) for j, e in zip(judged_correct, exact, strict=True) if j is not None]
    return (sum(j == e for j, e in pairs) / len(pairs) if pairs else None), len(pairs)
