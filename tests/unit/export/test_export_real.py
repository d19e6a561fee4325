"""Export on the real SmolLM2-135M-Instruct (tied embeddings, its own chat template), skipped when absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_standalone import _standalone
from transformers import GenerationConfig
from tuned_run import GSM8K_STYLE, make_run

from lmtune.evaluate.run import run as evaluate
from lmtune.export.run import run as export


@pytest.mark.real
def test_smollm2_lora_evaluate_and_export(tmp_path: Path, smollm2_dir: Path, smollm2_tokenizer) -> None:  # type: ignore[no-untyped-def]
    rundir = make_run(
        tmp_path,
        smollm2_dir,
        scale=0.02,
        conversations=GSM8K_STYLE[:2],
        evaluate={"max_samples": 2, "max_new_tokens": 8},
        export={"check_prompts": 2, "check_max_new_tokens": 8},
    )
    summary = evaluate(rundir)
    assert summary.base is not None
    assert summary.tuned["eval_loss"] != pytest.approx(summary.base["eval_loss"], abs=1e-4)
    assert summary.summary["format_compliance"]["tuned"] is not None  # GSM8K-style references

    result = export(rundir)
    assert result.check.identical
    assert result.check.max_logit_diff is not None and result.check.max_logit_diff < 1e-3
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(result.path).eos_token_id == im_end
    got = _standalone(result.path, GSM8K_STYLE[0][:-1], 8, tmp_path)
    assert got["lmtune_loaded"] is False and 1 <= len(got["new"]) <= 8
    check = json.loads((rundir.export / "export_check.json").read_text())
    assert got["new"] == check["before"][0]["token_ids"]
