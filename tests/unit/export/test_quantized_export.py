"""Quantized transformers exports on the tiny model (bitsandbytes 4/8-bit, torchao int8 weight-only): a
folder that loads without lmtune, reproduces the quantized model exactly, keeps the serving contract,
and reports its agreement with the merged model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from lmtune.cli import main
from lmtune.config.formats import BnbFormat, QuantizedFormat, TorchaoFormat
from lmtune.export.derived import write_derived
from lmtune.export.run import ExportResult
from lmtune.runtime.rundir import RunDir


@pytest.mark.parametrize(
    ("fmt", "method", "flag"),
    [
        (BnbFormat(quantization="nf4", text_samples=4), "bitsandbytes", "load_in_4bit"),
        (BnbFormat(quantization="int8", text_samples=4), "bitsandbytes", "load_in_8bit"),
        (TorchaoFormat(text_samples=4), "torchao", None),
    ],
    ids=["bnb-nf4", "bnb-int8", "torchao-int8"],
)
def test_quantized_folder_loads_alone_and_is_checked(
    lora_run: RunDir, exported: ExportResult, fmt: QuantizedFormat, method: str, flag: str | None
) -> None:
    assert exported.merged
    if fmt.type == "torchao":
        pytest.importorskip("torchao", reason="torchao (the dev extra) is not installed")
    out = write_derived(lora_run, fmt, lora_run.load_config().export)
    assert out == lora_run.export / f"{fmt.type}-{fmt.quantization}"
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == method and (flag is None or config[flag] is True)
    assert [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]
    # transformers alone loads it quantized
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.hf_quantizer is not None
    record = json.loads((out / "quantized_check.json").read_text())
    assert record["library"] == fmt.type and record["scheme"] == fmt.scheme
    assert record["reload_identical"] is True and record["contract_differences"] == []
    assert record["greedy_total"] == 4 and 0 <= record["greedy_identical_to_merged"] <= 4
    assert 0 < record["top1_agreement"] <= 1 and record["tokens_scored"] > 0
    assert record["kl_vs_merged"] > 0  # quantizing changes the distribution
    assert record["perplexity"] == pytest.approx(record["merged_perplexity"], rel=0.2)
    lineage = json.loads(lora_run.lineage.read_text())[out.name]
    assert lineage["reload_identical"] is True


def test_cli_writes_the_bnb_format(
    lora_run: RunDir, exported: ExportResult, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(lora_run.root), "--format", "bnb", "--quant", "fp4"]) == 0
    assert f"bnb: {lora_run.export / 'bnb-fp4'}" in capsys.readouterr().out
    assert main(["export", str(lora_run.root), "--quant", "fp4"]) == 2
    assert "lmtune: error: --quant applies with --format" in capsys.readouterr().err


def test_an_unknown_bnb_quantization_is_refused(lora_run: RunDir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(lora_run.root), "--format", "bnb", "--quant", "int4"]) == 2
    assert "lmtune: error: --quant 'int4': Input should be 'nf4', 'fp4' or 'int8'" in capsys.readouterr().err
