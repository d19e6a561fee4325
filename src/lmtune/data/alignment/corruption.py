"""Wrong-answer corruption of reference solutions, the core of preference pairs built from problems with a
reference solution such as GSM8K (`lmtune data pairs`, the `gsm8k_pairs` aliases).

The reference solution is `chosen`; `rejected` is the same text with wrong numbers, so a pair differs
only where the answer is wrong:

- `final`: the final answer N (`#### N`) becomes another plausible number N', and so does every N in
  the last step before it (`... = <<9*2=18>>18` -> `... = <<9*2=24>>24`).
- `step`: one intermediate result (a `<<expr=c>>c` calculation whose value is not the final answer)
  becomes c', and the error is carried through: every later calculation that uses c is recomputed
  from its expression, later mentions of a changed value are rewritten, and so the final answer
  changes too. Steps whose change does not reach the final answer are not used.
- `mixed` (default): `step` or `final` with equal chance per record (`final` where no step can be used).

Every choice comes from a random generator seeded with (seed, record position): the same input and
seed always give the same pairs."""

from __future__ import annotations

import ast
import operator
import random
import re
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import Any, Literal

from lmtune.data.formats.checks import _type_name
from lmtune.data.records import RawItem, RecordRejected, Reject

Corruption = Literal["final", "step", "mixed", "answer"]

Layout = Literal["messages", "plain"]

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"

NUMBER = re.compile(_NUM)
"""A number as written in a solution: 18, 2.5, 1,450,000 (the sign, if any, is text before it)."""

_SEGMENT = re.compile(rf"<<(?P<expr>[^<>=]*)=(?P<res>[^<>]*)>>(?P<shown>{_NUM})?|(?P<num>{_NUM})")

_FINAL = re.compile(rf"^####\s*-?\$?(?P<num>{_NUM})\s*$")

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def gsm8k_pairs(
    problems: Iterable[RawItem | Reject], corruption: Corruption = "mixed", seed: int = 0
) -> Iterator[RawItem | Reject]:
    """The `gsm8k_pairs` (`corruption="mixed"`) and `gsm8k_answer_pairs` (`corruption="answer"`) data
    aliases: one `preference` record per GSM8K problem (`problems`: its records), built in memory
    exactly as `lmtune data pairs gsm8k --corruption ...` writes them (messages layout, seed 0); a
    problem that gives no pair is a reject with its reason."""
    for position, item in enumerate(problems):
        if isinstance(item, Reject):
            yield item
            continue
        try:
            question = _text_field(item.value, "question")
            answer = _text_field(item.value, "answer")
            rejected, kind = corrupt_solution(answer, corruption, random.Random(f"{seed}:{position}"))
        except RecordRejected as exc:
            yield Reject(item.where, exc.reason, exc.detail, item.raw)
            continue
        record = pair_record(question, answer, rejected, "messages") | {"corruption": kind}
        yield RawItem(item.where, record, record)


def pair_record(question: str, chosen: str, rejected: str, layout: Layout) -> dict[str, Any]:
    """One `preference` record: the question as the prompt, the two solutions as the replies."""
    if layout == "plain":
        return {"prompt": question, "chosen": chosen, "rejected": rejected}
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def prompt_record(question: str, answer: str, layout: Layout) -> dict[str, Any]:
    """One `prompt` record: the question and its reference answer (for verifiable rewards)."""
    prompt: Any = question if layout == "plain" else [{"role": "user", "content": question}]
    return {"prompt": prompt, "answer": answer}


def corrupt_solution(
    solution: str, corruption: Corruption, rng: random.Random
) -> tuple[str, Literal["final", "step", "answer"]]:
    """A copy of `solution` with a wrong final answer or a wrong step carried to the end (`final`,
    `step`, `mixed`), or with only its `#### N` line changed, so that it contradicts its own working
    (`answer`).

    Returns:
        (the corrupted solution, which corruption was applied).

    Raises:
        RecordRejected: `uncorruptible` when the solution has no `#### N` final line, or when `step` was
            asked for and no intermediate result reaches the final answer.
    """
    final = final_answer(solution)
    if final is None:
        raise RecordRejected("uncorruptible", "the solution has no final '#### N' line")
    if corruption == "answer":
        return corrupt_answer(solution, rng), "answer"
    if corruption == "step" or (corruption == "mixed" and rng.random() < 0.5):
        stepped = corrupt_step(solution, rng)
        if stepped is not None:
            return stepped, "step"
        if corruption == "step":
            raise RecordRejected(
                "uncorruptible", "no intermediate result carries through to the final answer"
            )
    return corrupt_final(solution, rng), "final"


def final_answer(solution: str) -> Fraction | None:
    """The value N of the solution's last non-empty line `#### N` (None when it has none)."""
    lines = [line for line in solution.split("\n") if line.strip()]
    match = _FINAL.match(lines[-1].strip()) if lines else None
    return _value(match["num"]) if match else None


def corrupt_final(solution: str, rng: random.Random) -> str:
    """Change the final answer N to a plausible wrong N', on the `####` line and in the last step."""
    lines = solution.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    final = final_answer(solution)
    assert final is not None, "corrupt_final needs a '#### N' line"
    wrong = plausible_wrong(final, rng)
    for i in filled[-2:]:
        lines[i] = NUMBER.sub(lambda m: _format(wrong, m[0]) if _value(m[0]) == final else m[0], lines[i])
    return "\n".join(lines)


def corrupt_answer(solution: str, rng: random.Random) -> str:
    """Change only the `#### N` line to a plausible wrong N': the working above still computes N, so the
    stated answer contradicts it."""
    lines = solution.split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    final = final_answer(solution)
    assert final is not None, "corrupt_answer needs a '#### N' line"
    wrong = plausible_wrong(final, rng)
    lines[last] = NUMBER.sub(lambda m: _format(wrong, m[0]) if _value(m[0]) == final else m[0], lines[last])
    return "\n".join(lines)


def corrupt_step(solution: str, rng: random.Random) -> str | None:
    """Change one intermediate calculation's result and carry it through; None when no step can be used.

    Steps are tried in a seeded random order; a step is used when its change reaches the final answer
    and every later calculation that depends on it can be recomputed (no negative or undefined value).
    """
    final = final_answer(solution)
    results = [
        _value(m["res"].strip()) if NUMBER.fullmatch(m["res"].strip()) else None
        for m in _SEGMENT.finditer(solution)
        if m["expr"] is not None
    ]
    steps = [k for k, value in enumerate(results) if value is not None and value != final]
    rng.shuffle(steps)
    for k in steps:
        value = results[k]
        assert value is not None
        carried = _carry(solution, k, plausible_wrong(value, rng))
        if carried is not None and final_answer(carried) not in (None, final):
            return carried
    return None


def plausible_wrong(value: Fraction, rng: random.Random) -> Fraction:
    """A positive number near `value` that is not `value`: off by 1, 2 or 10, doubled, halved, x10.

    For a non-integer: off by 1/2 or 1, or doubled.
    """
    if value.denominator == 1:
        n = int(value)
        options = {n + 1, n - 1, n + 2, n - 2, n + 10, n - 10, 2 * n, 10 * n} | (
            {n // 2} if n % 2 == 0 else set()
        )
        candidates = sorted(Fraction(c) for c in options)
    else:
        half = Fraction(1, 2)
        candidates = sorted({value + half, value - half, value + 1, value - 1, 2 * value})
    return rng.choice([c for c in candidates if c != value and c > 0])


def evaluate(expr: str) -> Fraction | None:
    """Exact value of an arithmetic expression of numbers, + - * /, unary minus and parentheses.

    Returns None for anything else (names, calls, other operators) or a division by zero.
    """
    try:
        tree = ast.parse(NUMBER.sub(lambda m: m[0].replace(",", ""), expr.strip()), mode="eval")
        return _eval(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None


def _eval(node: ast.expr) -> Fraction:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _eval(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval(node.left), _eval(node.right))
    raise ValueError("not plain arithmetic")


def _carry(solution: str, k: int, wrong: Fraction) -> str | None:
    """Calculation `k` now gives `wrong`; later calculations using changed values are recomputed and
    later numbers equal to a changed value are rewritten. None when a recomputation fails."""
    changed: dict[Fraction, Fraction] = {}

    def substitute(m: re.Match[str]) -> str:
        value = _value(m[0])
        return _format(changed[value], m[0]) if value in changed else m[0]

    pieces: list[str] = []
    last = 0
    index = -1
    for m in _SEGMENT.finditer(solution):
        pieces.append(solution[last : m.start()])
        last = m.end()
        if m["num"] is not None:
            pieces.append(substitute(m))
            continue
        index += 1
        res = m["res"].strip()
        if index < k or not NUMBER.fullmatch(res):
            pieces.append(m[0])
            continue
        old = _value(res)
        expr = m["expr"] if index == k else NUMBER.sub(substitute, m["expr"])
        if index == k:
            new = wrong
        elif expr == m["expr"]:
            new = old  # uses no changed value
        else:
            computed = evaluate(expr)
            if computed is None or computed < 0:
                return None
            new = Fraction(round(computed * 100), 100)
        if new != old:
            changed[old] = new
        shown = m["shown"]
        shown_text = "" if shown is None else _format(new, shown) if _value(shown) == old else shown
        pieces.append(f"<<{expr}={_format(new, res)}>>{shown_text}")
    pieces.append(solution[last:])
    return "".join(pieces)


def _value(token: str) -> Fraction:
    return Fraction(token.replace(",", ""))


def _format(value: Fraction, like: str) -> str:
    """`value` written as `like` is: with thousands commas if it has them; at most 2 decimals."""
    if value.denominator == 1:
        n = int(value)
        return f"{n:,}" if "," in like else str(n)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def _text_field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise RecordRejected(
            "missing_field", f"field '{name}' {'is null' if name in record else 'is missing'}"
        )
    if not isinstance(value, str):
        raise RecordRejected("wrong_type", f"field '{name}' must be a string, got {_type_name(value)}")
    if not value.strip():
        raise RecordRejected("empty_side", f"field '{name}' is empty")
    return value
