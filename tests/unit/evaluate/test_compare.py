"""Every evaluation records its settings with a hash; `lmtune evaluate --compare` shows runs side by side
and refuses (or, when asked, flags) runs evaluated under different settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from tuned_run import make_run

from lmtune.cli import main
from lmtune.config.deploy import EvaluateConfig
from lmtune.evaluate.run import run
from lmtune.evaluate.settings import eval_settings, settings_hash, weights_sha256
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.stops import stop_token_ids

ONE_SUITE = {"suites": [{"type": "perplexity"}, {"type": "exact_match"}]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> list[RunDir]:
    root = tmp_path_factory.mktemp("compare")
    made = [
        make_run(root, tiny_model_dir, name="a", evaluate=ONE_SUITE),
        make_run(root, tiny_model_dir, name="b", scale=0.9, evaluate=ONE_SUITE),
        make_run(root, tiny_model_dir, name="c", evaluate={**ONE_SUITE, "max_new_tokens": 4}),
    ]
    for rundir in made:
        run(rundir)
    return made


def test_settings_are_recorded_with_a_hash(runs: list[RunDir], tiny_model_dir: Path) -> None:
    record = json.loads((runs[0].eval / "settings.json").read_text())
    settings = record["settings"]
    assert record["settings_hash"] == settings_hash(settings)
    assert settings["decoding"] == {
        "strategy": "greedy",
        "max_new_tokens": 8,
        "batch_size": 2,
        "max_samples": 8,
    }
    assert settings["stop_tokens"][0] == "<|im_end|>"  # the tiny chat template ends turns with it
    assert [s["type"] for s in settings["suites"]] == ["perplexity", "exact_match"]
    assert record["weights"]["sha256"] == weights_sha256(Path(record["weights"]["path"]))
    for side in ("tuned", "base"):
        assert (
            json.loads((runs[0].eval / f"{side}.json").read_text())["settings_hash"]
            == record["settings_hash"]
        )
    b = json.loads((runs[1].eval / "settings.json").read_text())
    assert b["settings_hash"] == record["settings_hash"]  # same settings, other weights
    assert b["weights"]["sha256"] != record["weights"]["sha256"]


def test_the_system_prompt_and_template_are_part_of_the_settings(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = EvaluateConfig()
    plain = eval_settings(cfg, tok, stop_token_ids(tok), None)
    told = eval_settings(cfg, tok, stop_token_ids(tok), "be brief")
    assert told["system_prompt"] == "be brief" and settings_hash(plain) != settings_hash(told)
    tok.chat_template = tok.chat_template + " "
    assert settings_hash(eval_settings(cfg, tok, stop_token_ids(tok), None)) != settings_hash(plain)


def test_runs_with_the_same_settings_compare(runs: list[RunDir], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--compare", str(runs[0].root), str(runs[1].root)]) == 0
    out = capsys.readouterr().out
    assert "eval_loss" in out and "exact_match" in out and "FLAGGED" not in out


def test_runs_with_other_settings_are_refused_or_flagged(
    runs: list[RunDir], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--compare", str(runs[0].root), str(runs[2].root)]) == 2
    err = capsys.readouterr().err
    assert "lmtune: error: c was evaluated under other settings than a" in err and "decoding differ" in err
    code = main(["evaluate", "--compare", str(runs[0].root), str(runs[2].root), "--allow-different-settings"])
    assert code == 0
    assert "FLAGGED: c was evaluated under other settings than a" in capsys.readouterr().out


def test_the_comparison_as_a_page(
    runs: list[RunDir], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "side.html"
    argv = ["evaluate", "--compare", *(str(r.root) for r in runs), "--allow-different-settings"]
    assert main([*argv, "--html", str(page)]) == 0
    assert f"comparison page: {page}" in capsys.readouterr().out
    html = page.read_text()
    for r in runs:
        assert f"<th>{r.root.name}</th>" in html  # one column per run
    summary = json.loads((runs[0].eval / "summary.json").read_text())
    for name in summary:
        assert f"<td>{name}</td>" in html and f"<h3>{name}</h3>" in html
    assert "FLAGGED: c was evaluated under other settings than a" in html
    assert "<script" not in html and "http" not in html


def test_a_run_without_an_evaluation(
    tmp_path: Path, runs: list[RunDir], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--compare", str(runs[0].root), str(tmp_path)]) == 2
    assert "no evaluation (no eval/summary.json)" in capsys.readouterr().err
