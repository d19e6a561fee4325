"""Stage 5 end to end on the tiny model: files, base vs tuned, metric bookkeeping, error messages."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from tuned_run import TEXT_STYLE, make_run, prepare_data

from lmtune.errors import DataError, ModelLoadError
from lmtune.evaluate import metrics
from lmtune.evaluate.loss import eval_loss
from lmtune.evaluate.run import SUMMARY_METRICS, EvalSummary, run
from lmtune.runtime.generation import greedy_generate, render_prompt
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.stops import stop_token_ids

PREDICTION_KEYS = {
    "prompt",
    "reference",
    "prediction",
    "reference_answer",
    "predicted_answer",
    "correct",
    "has_format",
}


@pytest.fixture(scope="module")
def lora_eval(lora_run: RunDir) -> EvalSummary:
    return run(lora_run)


def _read(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())


def test_writes_base_tuned_and_summary_with_expected_keys(lora_run: RunDir, lora_eval: EvalSummary) -> None:
    for name in ("base", "tuned"):
        report = _read(lora_run.eval / f"{name}.json")
        assert report["model"] == name
        assert set(report["metrics"]) == {
            "eval_loss",
            "perplexity",
            "eval_tokens",
            "exact_match",
            "format_compliance",
            "samples",
        }
        assert report["metrics"]["samples"] == len(report["predictions"]) == 5
        for p in report["predictions"]:
            assert set(p) == PREDICTION_KEYS
            assert p["prompt"].endswith("<|im_start|>assistant\n")
    summary = _read(lora_run.eval / "summary.json")
    assert set(summary) == set(SUMMARY_METRICS)
    assert all(set(v) == {"base", "tuned", "delta", "ci95", "items"} for v in summary.values())
    for row in summary.values():  # the paired interval holds the delta, over the items both sides count
        assert row["ci95"][0] <= row["delta"] <= row["ci95"][1]
    assert summary["eval_loss"]["items"] == summary["exact_match"]["items"] == 5
    assert summary == lora_eval.summary
    # references are the last assistant messages, prompts end before them
    tuned = _read(lora_run.eval / "tuned.json")
    assert tuned["predictions"][1]["reference"].endswith("#### 1,234")
    assert tuned["predictions"][1]["reference_answer"] == "1234"
    assert "1,234 + 34" not in tuned["predictions"][1]["prompt"]


def test_appends_one_eval_line_to_metrics(lora_run: RunDir, lora_eval: EvalSummary) -> None:
    lines = [json.loads(x) for x in lora_run.metrics.read_text().splitlines()]
    evals = [x["eval"] for x in lines if "eval" in x]
    assert evals == [lora_eval.summary]


def test_base_and_tuned_differ_for_a_perturbed_adapter(lora_run: RunDir, lora_eval: EvalSummary) -> None:
    assert lora_eval.base is not None
    assert lora_eval.tuned["eval_loss"] != pytest.approx(lora_eval.base["eval_loss"], abs=1e-3)
    base = _read(lora_run.eval / "base.json")["predictions"]
    tuned = _read(lora_run.eval / "tuned.json")["predictions"]
    assert [p["prediction"] for p in base] != [p["prediction"] for p in tuned]


def test_base_is_the_plain_base_model(lora_run: RunDir, lora_eval: EvalSummary, tiny_model_dir: Path) -> None:
    """The disabled adapter must give exactly the base model's numbers (no leftover LoRA update)."""
    assert lora_eval.base is not None
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = _eval_rows(lora_run)
    direct = eval_loss(base, rows, batch_size=2, pad_id=tok.pad_token_id)
    assert lora_eval.base["eval_loss"] == pytest.approx(direct.loss, abs=1e-5)
    prompts = [p["prompt"] for p in _read(lora_run.eval / "base.json")["predictions"]]
    gens = greedy_generate(base, tok, prompts, max_new_tokens=8, batch_size=2, stop_ids=stop_token_ids(tok))
    assert [g.text for g in gens] == [
        p["prediction"] for p in _read(lora_run.eval / "base.json")["predictions"]
    ]


def _eval_rows(rundir: RunDir) -> list[dict[str, list[int]]]:
    from datasets import load_from_disk

    ds = load_from_disk(str(rundir.data / "eval"))
    return [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in ds]


def test_summary_deltas_agree_with_base_and_tuned(lora_eval: EvalSummary) -> None:
    assert lora_eval.base is not None
    checked = 0
    for name, row in lora_eval.summary.items():
        base, tuned, delta = row["base"], row["tuned"], row["delta"]
        assert base == lora_eval.base[name] and tuned == lora_eval.tuned[name]
        if base is None or tuned is None:
            assert delta is None
            continue
        assert delta == pytest.approx(tuned - base)
        assert math.copysign(1, delta) == math.copysign(1, tuned - base) or delta == 0
        checked += 1
    loss, ppl = lora_eval.summary["eval_loss"], lora_eval.summary["perplexity"]
    assert loss["delta"] != 0 and (loss["delta"] > 0) == (ppl["delta"] > 0)  # ppl = exp(loss) is monotone
    assert lora_eval.tuned["perplexity"] == pytest.approx(math.exp(lora_eval.tuned["eval_loss"]))
    assert checked >= 3


def test_aggregates_match_per_example_flags(lora_run: RunDir) -> None:
    for name in ("base", "tuned"):
        report = _read(lora_run.eval / f"{name}.json")
        preds = report["predictions"]
        for p in preds:  # the stored flags are what the metric functions say about the stored texts
            s = metrics.score(p["prediction"], p["reference"])
            assert (s.correct, s.predicted_answer, s.has_format) == (
                p["correct"],
                p["predicted_answer"],
                p["has_format"],
            )
        assert report["metrics"]["exact_match"] == pytest.approx(
            sum(p["correct"] for p in preds) / len(preds)
        )
        assert report["metrics"]["format_compliance"] == pytest.approx(
            sum(p["has_format"] for p in preds) / len(preds)
        )


def test_text_references_score_exact_match_and_no_format(tmp_path: Path, tiny_model_dir: Path) -> None:
    """References equal to the tuned model's own greedy answers score 1.0; text references give no
    format compliance."""
    from peft import PeftModel

    rundir = make_run(tmp_path, tiny_model_dir, conversations=TEXT_STYLE, evaluate={"compare_base": False})
    tok = AutoTokenizer.from_pretrained(rundir.adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), rundir.adapter)
    prompts = [render_prompt(tok, c[:-1]) for c in TEXT_STYLE]
    own = greedy_generate(
        model.eval(), tok, prompts, max_new_tokens=8, batch_size=2, stop_ids=stop_token_ids(tok)
    )
    assert all(g.text.strip() for g in own)
    answered = [
        [*c[:-1], {"role": "assistant", "content": g.text}] for c, g in zip(TEXT_STYLE, own, strict=True)
    ]
    prepare_data(rundir.load_config(), tok, answered)
    result = run(rundir)
    assert result.tuned["exact_match"] == 1.0
    assert result.tuned["format_compliance"] is None
    assert result.base is None and not (rundir.eval / "base.json").exists()
    assert all(row["base"] is None and row["delta"] is None for row in result.summary.values())


def test_full_fine_tuning_and_max_samples(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, method="full", scale=0.05, evaluate={"max_samples": 3})
    result = run(rundir)
    assert result.base is not None
    assert result.tuned["samples"] == result.base["samples"] == 3
    assert len(_read(rundir.eval / "tuned.json")["predictions"]) == 3
    assert (
        result.tuned["eval_tokens"]
        == result.base["eval_tokens"]
        == sum(sum(1 for x in r["labels"][1:] if x != -100) for r in _eval_rows(rundir))
    )  # the loss covers the whole split, not only the sampled examples
    assert result.tuned["eval_loss"] != pytest.approx(result.base["eval_loss"], abs=1e-4)


def test_weights_override_evaluates_another_folder(
    lora_run: RunDir, tmp_path: Path, tiny_model_dir: Path
) -> None:
    other = make_run(tmp_path, tiny_model_dir, scale=1.0, evaluate={"compare_base": False})
    a = run(other)
    b = run(other, weights=lora_run.adapter)
    assert a.tuned["eval_loss"] != pytest.approx(b.tuned["eval_loss"], abs=1e-4)
    assert json.loads((other.eval / "tuned.json").read_text())["weights"] == str(lora_run.adapter)


def test_clear_errors_for_missing_inputs(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir)
    shutil.rmtree(rundir.adapter)
    with pytest.raises(ModelLoadError, match=r"model: no trained weights .* run `lmtune train` first"):
        run(rundir)
    shutil.rmtree(rundir.data / "eval")
    with pytest.raises(DataError, match=r"data: no prepared data \(run the data stage first\)"):
        run(rundir)


def test_empty_eval_split_is_refused(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty eval split (as data.eval_size = 0 writes), served without re-running the data stage.
    from lmtune.data import prepare
    from lmtune.evaluate import run as evaluate_run

    rundir = make_run(tmp_path, tiny_model_dir)
    real = prepare.load_prepared(rundir)
    empty = prepare.PreparedData(train=real.train, eval=real.eval.select([]), stats=real.stats)
    monkeypatch.setattr(evaluate_run, "load_prepared", lambda _: empty)
    with pytest.raises(DataError, match=r"data/eval: the eval split is empty; set data.eval_size > 0"):
        run(rundir)


def test_conversation_must_end_with_reference(tmp_path: Path, tiny_model_dir: Path) -> None:
    from datasets import Dataset

    rundir = make_run(tmp_path, tiny_model_dir)
    shutil.rmtree(rundir.data / "eval")
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    Dataset.from_dict(
        {"input_ids": [[5, 6]], "labels": [[5, 6]], "attention_mask": [[1, 1]], "messages": [convo[::-1]]}
    ).save_to_disk(str(rundir.data / "eval"))
    with pytest.raises(
        DataError, match="eval example 0: the conversation must end with an assistant message"
    ):
        run(rundir)
