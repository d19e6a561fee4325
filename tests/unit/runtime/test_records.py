"""Every record a run writes is read through the typed models of `lmtune.runtime.records`, and a run
folder written by the previous version (tests/fixtures/run_v0_1_0, lmtune 0.1.0) still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from lmtune.monitor.store import RequestStore
from lmtune.runtime.records import (
    EvalLog,
    EvalSummaryFile,
    EvalSummaryLog,
    ExportCheckRecord,
    TrainLog,
    TrainSummaryLog,
    metrics_line,
    metrics_record,
    read_metrics,
)
from lmtune.runtime.rundir import RunDir
from lmtune.train.run_metrics import drop_training_metrics_after, last_train_loss, train_losses

OLD_RUN = Path(__file__).resolve().parents[2] / "fixtures" / "run_v0_1_0"


@pytest.fixture
def old_run(tmp_path: Path) -> RunDir:
    """A writable copy of the run folder written by lmtune 0.1.0."""
    return RunDir(Path(shutil.copytree(OLD_RUN, tmp_path / "run")))


def test_the_previous_versions_metrics_load(old_run: RunDir) -> None:
    records = old_run.read_metrics()
    assert [type(r) for r in records] == [
        TrainLog,
        TrainLog,
        TrainLog,
        TrainSummaryLog,
        EvalLog,
        EvalSummaryLog,
    ]
    assert train_losses(old_run) == pytest.approx(
        {2: 6.265196800231934, 4: 6.264754295349121, 6: 6.246893882751465}
    )
    assert last_train_loss(old_run) == pytest.approx(6.246893882751465)
    summary = records[-1]
    assert isinstance(summary, EvalSummaryLog)
    assert summary.eval["eval_loss"].tuned == pytest.approx(6.237159579407935)
    assert records[3].model_extra == {  # numbers lmtune does not name are kept
        "train_samples_per_second": 1.002,
        "train_steps_per_second": 0.25,
        "total_flos": 4239654912.0,
        "train_loss": 6.25894832611084,
    }


def test_rewriting_keeps_every_record_as_it_was(old_run: RunDir) -> None:
    """A resumed run rewrites metrics.jsonl through the models: nothing is lost or added, except the
    `kind` the old evaluation line lacked."""
    before = [json.loads(line) for line in old_run.metrics.read_text().splitlines()]
    drop_training_metrics_after(old_run, step=6)
    after = [json.loads(line) for line in old_run.metrics.read_text().splitlines()]
    assert after[:-1] == before[:-1]
    assert after[-1] == {"kind": "eval_summary", **before[-1]}

    drop_training_metrics_after(old_run, step=3)  # what a run resumed from checkpoint-3 keeps
    assert [(r.kind, getattr(r, "step", None)) for r in old_run.read_metrics()] == [
        ("train", 2),
        ("eval_summary", None),
    ]


def test_the_previous_versions_eval_export_and_requests_load(old_run: RunDir) -> None:
    summary = EvalSummaryFile.model_validate_json((old_run.eval / "summary.json").read_text()).root
    assert set(summary) == {"eval_loss", "perplexity", "exact_match", "format_compliance"}
    assert summary["perplexity"].delta == pytest.approx(-4.624176978275898)

    check = ExportCheckRecord.model_validate_json((old_run.export / "export_check.json").read_text())
    assert check.identical and len(check.prompts) == len(check.before) == len(check.after) == 2
    assert [g.token_ids for g in check.before] == [g.token_ids for g in check.after]

    rows = RequestStore(old_run.root / "monitor" / "requests.sqlite").recent()
    assert len(rows) == 1
    assert (rows[0].endpoint, rows[0].status, rows[0].completion_tokens, rows[0].stream) == (
        "/v1/chat/completions",
        200,
        8,
        False,
    )
    assert old_run.load_config().name == "tiny-smoke"


def test_writing_then_reading_is_identity(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    written = [
        {"kind": "train", "step": 1, "epoch": 0.5, "loss": 2.0, "rewards/accuracies": 0.75},
        {"kind": "align_eval_before", "step": 0, "eval_reward": -0.1},
        {"kind": "eval_summary", "eval": {"eval_loss": {"base": 2.0, "tuned": 1.5, "delta": -0.5}}},
    ]
    for record in written:
        rundir.append_metrics(record)
    assert [json.loads(line) for line in rundir.metrics.read_text().splitlines()] == written
    assert [json.loads(metrics_line(r)) for r in read_metrics(rundir.metrics)] == written


def test_a_record_built_in_code_is_written_with_its_kind(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path / "run")
    rundir.append_metrics(EvalSummaryLog(eval=EvalSummaryFile.model_validate({"loss": {"tuned": 1.0}}).root))
    rundir.append_metrics(TrainLog(step=3, loss=0.5))
    assert [json.loads(line) for line in rundir.metrics.read_text().splitlines()] == [
        {"kind": "eval_summary", "eval": {"loss": {"tuned": 1.0}}},  # what it was given, nothing more
        {"kind": "train", "step": 3, "loss": 0.5},
    ]


def test_a_malformed_record_is_refused() -> None:
    with pytest.raises(ValidationError, match="step"):
        metrics_record({"kind": "train", "loss": 1.0})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        metrics_record({"kind": "trian", "step": 1})
