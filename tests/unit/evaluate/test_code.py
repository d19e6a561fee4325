"""Code evaluation: pass@k by the unbiased estimator, problems and samples files with clear errors,
`lmtune evaluate code` on given samples, and the code suite on a model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lmtune.cli import main
from lmtune.errors import DataError
from lmtune.evaluate.code import (
    MINI_HUMANEVAL,
    SampleResult,
    completion_from_reply,
    pass_at,
    pass_at_k,
    program,
    read_problems,
    read_samples,
)
from lmtune.evaluate.sandbox import landlock_abi

needs_sandbox = pytest.mark.skipif(
    landlock_abi() < 1,
    reason="this kernel has no Landlock (Linux 5.13+): the code sandbox refuses to run here",
)
MINI = Path(__file__).resolve().parents[3] / "src" / "lmtune" / "evaluate" / "data" / "mini_humaneval.jsonl"


@pytest.mark.parametrize(
    ("n", "c", "k"), [(5, 2, 1), (5, 2, 3), (10, 0, 5), (10, 10, 1), (200, 13, 100), (3, 1, 3)]
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_reports_only_the_k_every_task_reaches() -> None:
    results = [SampleResult("a", "", p, "") for p in (True, False, False)] + [
        SampleResult("b", "", False, "")
    ] * 2
    mean, per_task = pass_at(results, [1, 2, 3])
    assert set(mean) == {1, 2}  # task b has 2 samples: no pass@3
    assert mean[1] == pytest.approx((1 / 3 + 0) / 2)
    assert per_task["a"][2] == pytest.approx(1 - math.comb(2, 2) / math.comb(3, 2))


def test_the_packaged_problems_and_their_errors(tmp_path: Path) -> None:
    problems = read_problems(MINI_HUMANEVAL)
    assert len(problems) == 12 and all(p.entry_point in p.prompt for p in problems.values())
    bad = tmp_path / "p.jsonl"
    bad.write_text(
        json.dumps({"task_id": "x", "prompt": "def f():\n", "test": "", "entry_point": "f"}) + "\n"
    )
    with pytest.raises(DataError, match=r"p\.jsonl:1: field 'test' must be a non-empty string"):
        read_problems(bad)
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "nope", "completion": "x"}) + "\n")
    with pytest.raises(
        DataError, match=r"s\.jsonl:1: field 'task_id': 'nope' is not a task of the problems file"
    ):
        read_samples(samples, problems)


def test_a_reply_becomes_a_completion() -> None:
    problem = read_problems(MINI_HUMANEVAL)["lmtune/0"]
    whole = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert "def add(a, b):" in program(problem, completion_from_reply(problem, whole))
    body = "```python\n    return a + b\n```"
    assert program(problem, completion_from_reply(problem, body)).startswith(
        problem.prompt + "    return a + b"
    )


@needs_sandbox
def test_cli_scores_given_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The canonical solutions pass, a wrong one fails, a looping one times out: pass@1 counts them."""
    rows = [json.loads(line) for line in MINI.read_text().splitlines()]
    samples = [{"task_id": r["task_id"], "completion": r["canonical_solution"]} for r in rows]
    samples[1] = {"task_id": rows[1]["task_id"], "completion": "    return n % 2 == 1\n"}
    samples[2] = {"task_id": rows[2]["task_id"], "completion": "    while True:\n        pass\n"}
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    code = main(["evaluate", "code", MINI_HUMANEVAL, "--samples", str(path), "--k", "1,10", "--timeout", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.index("}") + 1]) == {"pass@1": pytest.approx(10 / 12)}  # no pass@10
    results = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False, False] + [True] * 9
    assert results[1]["result"] == "failed: AssertionError" and results[2]["result"] == "timed out"


def test_cli_needs_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "code", MINI_HUMANEVAL]) == 2
    assert "lmtune: error: evaluate code needs --samples SAMPLES.jsonl" in capsys.readouterr().err


@needs_sandbox
def test_the_code_suite_on_a_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tuned_run import make_run

    from lmtune.evaluate.run import run

    suite = {"type": "code", "samples_per_task": 2, "ks": [1, 2], "temperature": 0.8, "max_samples": 3}
    rundir = make_run(tmp_path, tiny_model_dir, evaluate={"suites": [suite], "max_new_tokens": 16})
    result = run(rundir)
    assert list(result.summary) == ["code/pass@1", "code/pass@2"]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    info = tuned["suites"]["code"]
    assert info["settings"]["tasks"] == 3 and info["settings"]["samples_per_task"] == 2
    assert len(info["items"]) == 6 and {r["task_id"] for r in info["items"]} == {
        "lmtune/0",
        "lmtune/1",
        "lmtune/2",
    }
    # a random tiny model writes no working code: every sample fails, and says why
    assert all(not r["passed"] and r["result"] for r in info["items"])
    assert tuned["metrics"]["code/pass@1"] == 0.0
