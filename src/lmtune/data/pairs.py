"""Preference pairs from problems with a reference solution, such as GSM8K (`lmtune data pairs`).

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
seed always give the same pairs, and `limit` does not change the pairs it keeps. A record that cannot
be corrupted (no `#### N` line; for `step`, no usable step) is written to the rejects file with reason
`uncorruptible`, so read = pairs + rejected.
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from lmtune.config.data import SourceConfig
from lmtune.data.assets import GSM8K
from lmtune.data.formats import _type_name
from lmtune.data.records import RawItem, RecordRejected, Reject, RejectLog, open_rejects
from lmtune.data.sources import read_source

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


@dataclass
class PairsReport:
    """Counts of one `build_pairs` run; `read == pairs + rejected`."""

    read: int = 0
    pairs: int = 0
    prompts: int = 0
    by_corruption: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    out: str = ""
    prompts_out: str | None = None
    rejects_path: str = ""

    @property
    def rejected(self) -> int:
        return sum(self.by_reason.values())


def build_pairs(
    path: str,
    out: str | Path,
    *,
    corruption: Corruption = "mixed",
    seed: int = 0,
    limit: int | None = None,
    layout: Layout = "messages",
    prompts_out: str | Path | None = None,
    rejects_path: str | Path | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
) -> PairsReport:
    """Write one preference pair per record of `path` (a file or the `gsm8k` alias) to `out` (JSONL).

    Args:
        path: records with a question and a reference solution ending in `#### N`.
        out: the pairs file, in the `preference` format; its folder is created.
        corruption: how `rejected` is made: `final`, `step` or `mixed`.
        seed: seeds every random choice (per record: seed and position).
        limit: read at most this many records.
        layout: `messages` (prompt/chosen/rejected as lists of role/content turns) or `plain` (strings).
        prompts_out: also write the `prompt` format (question + reference answer) here, for GRPO/PPO:
            every record with both fields, including those that give no pair.
        rejects_path: where records that give no pair go (default: `<out stem>.rejects.jsonl`).
        question_field: the records' question field.
        answer_field: the records' reference solution field.

    Raises:
        DataError: the input cannot be read.
    """
    out = Path(out)
    rejects_file = Path(rejects_path) if rejects_path else out.with_name(f"{out.stem}.rejects.jsonl")
    report = PairsReport(
        out=str(out), prompts_out=str(prompts_out) if prompts_out else None, rejects_path=str(rejects_file)
    )
    items = read_source(SourceConfig(path=path, format="prompt"))
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = open_rejects(rejects_file)
    log = RejectLog(sink)
    prompts_path = Path(prompts_out) if prompts_out else None
    if prompts_path is not None:
        prompts_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        prompts_cm = prompts_path.open("w", encoding="utf-8") if prompts_path else nullcontext()
        with out.open("w", encoding="utf-8") as pairs_f, prompts_cm as prompts_f:
            for position, item in enumerate(items):
                if limit is not None and position >= limit:
                    break
                report.read += 1
                if isinstance(item, Reject):
                    log.add(item)
                    continue
                try:
                    question = _text_field(item.value, question_field)
                    answer = _text_field(item.value, answer_field)
                    if prompts_f is not None:
                        prompts_f.write(_dumps(prompt_record(question, answer, layout)))
                        report.prompts += 1
                    rejected, kind = corrupt_solution(answer, corruption, random.Random(f"{seed}:{position}"))
                except RecordRejected as exc:
                    log.add(Reject(item.where, exc.reason, exc.detail, item.raw))
                    continue
                pairs_f.write(_dumps(pair_record(question, answer, rejected, layout) | {"corruption": kind}))
                report.pairs += 1
                report.by_corruption[kind] += 1
    finally:
        if sink is not None:
            sink.close()
    report.by_reason = log.by_reason
    return report


def gsm8k_pairs(corruption: Corruption = "mixed", seed: int = 0) -> Iterator[RawItem | Reject]:
    """The `gsm8k_pairs` (`corruption="mixed"`) and `gsm8k_answer_pairs` (`corruption="answer"`) data
    aliases: one `preference` record per GSM8K problem, built in memory exactly as `lmtune data pairs
    gsm8k --corruption ...` writes them (messages layout, seed 0); a problem that gives no pair is a reject
    with its reason."""
    for position, item in enumerate(read_source(SourceConfig(path=GSM8K, format="prompt"))):
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


def format_pairs_report(report: PairsReport) -> str:
    """A short text table: read, pairs by corruption, rejected by reason, then where the files went."""
    rows = [("read", report.read), ("pairs", report.pairs)]
    rows += [(f"  {kind}", n) for kind, n in sorted(report.by_corruption.items())]
    rows += [("rejected", report.rejected)]
    rows += [(f"  {reason}", n) for reason, n in sorted(report.by_reason.items())]
    width = max(len(name) for name, _ in rows)
    lines = [f"pairs written to {report.out} (preference format)"]
    lines += [f"{name:<{width}}  {n:>8}" for name, n in rows]
    if report.prompts_out is not None:
        lines.append(f"{report.prompts} prompts written to {report.prompts_out} (prompt format)")
    if report.rejected:
        lines.append(f"rejects written to {report.rejects_path}")
    return "\n".join(lines)


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


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"
