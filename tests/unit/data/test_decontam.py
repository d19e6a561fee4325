"""Decontamination: a training record sharing a 13-gram with an eval set is removed, and the rejects file
and stats.json say which eval set, which record and which n-gram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.curation import EvalSetConfig
from lmtune.config.run import RunConfig
from lmtune.data.curation.decontam import build_index
from lmtune.data.prepare import prepare
from lmtune.errors import DataError
from lmtune.runtime.rundir import RunDir

EVAL_Q = "A train leaves the station at noon travelling sixty miles an hour toward a city 200 miles away"
EVAL_A = "It arrives after three hours and twenty minutes. #### 200/60"


def _chat(user: str, assistant: str) -> str:
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return json.dumps({"messages": turns})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    evals = tmp_path / "eval.jsonl"
    # the second eval line lacks its answer: not readable as prompt_completion, so not indexed
    lines = [json.dumps({"question": EVAL_Q, "answer": EVAL_A}), json.dumps({"question": "hi"})]
    evals.write_text("\n".join(lines) + "\n")
    train = tmp_path / "train.jsonl"
    rows = [_chat(f"what is {i} plus {i}?", f"{2 * i}") for i in range(6)]
    # planted: 14 words of the eval question, re-cased and re-punctuated, inside other text
    planted = "Quick one. TRAIN leaves the station, at noon; travelling sixty miles an hour toward a city?"
    rows.insert(2, _chat(planted, "about three hours"))
    # 12 shared words only: not contaminated at n = 13
    rows.insert(4, _chat("station at noon travelling sixty miles an hour toward a city 200", "ok then"))
    train.write_text("\n".join(rows) + "\n")
    return {"eval": evals, "train": train}


def _cfg(tmp_path: Path, files: dict[str, Path], **decontam: Any) -> RunConfig:
    eval_set = {"name": "trains", "path": str(files["eval"]), "format": "prompt_completion"}
    eval_set["columns"] = {"prompt": "question", "completion": "answer"}
    return RunConfig.model_validate(
        {
            "output_dir": str(tmp_path / "runs"),
            "data": {
                "sources": [{"path": str(files["train"])}],
                "eval_size": 1,
                "curation": {"decontamination": {"eval_sets": [eval_set], **decontam}},
            },
        }
    )


def test_planted_contaminated_record_is_removed_and_reported(
    tmp_path: Path, files: dict[str, Path], tiny_tokenizer: Any
) -> None:
    cfg = _cfg(tmp_path, files)
    rundir = RunDir.for_config(cfg)
    prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    stats = json.loads((rundir.data / "stats.json").read_text())
    assert (stats["read"], stats["accepted"], stats["rejected"]) == (8, 7, 1)
    assert stats["rejected_by_reason"] == {"contaminated": 1}
    block = stats["curation"]["steps"]["decontamination"]
    assert block == {
        "enabled": True,
        "removed": 1,
        "ngram": 13,
        "eval_sets": {"trains": {"records": 1, "removed": 1}},
    }
    (reject,) = [json.loads(line) for line in rundir.rejects.read_text().splitlines()]
    assert reject["line"] == 3 and reject["reason"] == "contaminated"
    assert reject["detail"] == (
        "shares the 13-gram 'train leaves the station at noon travelling sixty miles an hour toward a' "
        f"with eval set 'trains' ({files['eval']}:1)"
    )


def test_ngram_size_is_configurable(tmp_path: Path, files: dict[str, Path], tiny_tokenizer: Any) -> None:
    cfg = _cfg(tmp_path, files, ngram=12)
    rundir = RunDir.for_config(cfg)
    prepare(cfg.data, rundir, tiny_tokenizer, seed=cfg.seed)
    stats = json.loads((rundir.data / "stats.json").read_text())
    assert stats["rejected_by_reason"] == {"contaminated": 2}  # the 12-word overlap now counts too


def test_an_eval_set_with_no_readable_record_is_an_error(tmp_path: Path, files: dict[str, Path]) -> None:
    wrong = EvalSetConfig(name="trains", path=str(files["eval"]), format="alpaca")
    with pytest.raises(DataError, match=r"'trains' .*: no readable record in format 'alpaca'"):
        build_index([wrong], 13)


@pytest.mark.real
def test_gsm8k_as_eval_set_catches_a_copied_problem(benchmark_module: Any) -> None:
    try:
        problem = benchmark_module("curation_support").gsm8k_records()[5]
    except DataError as exc:
        pytest.skip(str(exc))
    gsm8k = EvalSetConfig(name="gsm8k", path="gsm8k", format="prompt_completion",
                          columns={"prompt": "question", "completion": "answer"})  # fmt: skip
    index = build_index([gsm8k], 13)
    assert index.records == {"gsm8k": 1319}
    hit = index.first_overlap(f"Here is a puzzle for you. {problem.prompt}")
    assert hit is not None and hit.eval_set == "gsm8k" and hit.eval_record.endswith("test.jsonl:6")
    assert index.first_overlap("Natalia has some clips and sells a few of them to her friends.") is None


def test_prepared_data_is_redone_when_an_eval_set_changes(
    tmp_path: Path, files: dict[str, Path], tiny_tokenizer: Any
) -> None:
    import os

    from lmtune.data.prepare import prepare_key

    cfg = _cfg(tmp_path, files)
    before = prepare_key(cfg.data, tiny_tokenizer, seed=cfg.seed)
    files["eval"].write_text(files["eval"].read_text() + json.dumps({"question": "q", "answer": "a"}) + "\n")
    os.utime(files["eval"], ns=(1, 1))  # a different size and time, whatever the clock resolution
    assert prepare_key(cfg.data, tiny_tokenizer, seed=cfg.seed) != before
