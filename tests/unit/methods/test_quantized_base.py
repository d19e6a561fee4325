"""QLoRA: a bitsandbytes-quantized base (nf4 / fp4 / int8, on CPU), the adapter's record of it, and
merging: exact through dequantisation for 4-bit, refused for int8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import pytest
import torch
from transformers import AutoModelForCausalLM, set_seed

from lmtune import methods
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.model import ModelConfig, Quantization
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.methods.peft_adapter import QUANTIZATION_FILE, saved_quantization
from lmtune.runtime.load import load_model
from lmtune.runtime.quantize import bnb_config, dequantize, quantization_of

IDS = torch.tensor([[1, 5, 9, 40, 77, 120, 3, 8]])


@torch.no_grad()
def _logits(model: Any) -> torch.Tensor:
    return model.eval()(input_ids=IDS).logits


def _qlora(model_dir: Path, quantization: Quantization, cfg: LoraConfig | None = None) -> Any:
    set_seed(0)
    base = load_model(ModelConfig(path=str(model_dir), quantization=quantization))
    model = methods.prepare(base, cfg or LoraConfig(rank=4, alpha=8))
    with torch.no_grad():  # a trained-looking adapter
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


def test_bnb_config_follows_the_qlora_recipe() -> None:
    assert bnb_config("none", "float32") is None
    nf4 = bnb_config("nf4", "bfloat16")
    assert nf4 is not None and nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4"
    assert nf4.bnb_4bit_use_double_quant and nf4.bnb_4bit_compute_dtype == torch.bfloat16
    fp4 = bnb_config("fp4", "float32")
    assert fp4 is not None and fp4.bnb_4bit_quant_type == "fp4"
    int8 = bnb_config("int8", "float32")
    assert int8 is not None and int8.load_in_8bit and not int8.load_in_4bit


@pytest.mark.parametrize(
    ("quantization", "layer"),
    [("nf4", bnb.nn.Linear4bit), ("fp4", bnb.nn.Linear4bit), ("int8", bnb.nn.Linear8bitLt)],
)
def test_load_model_quantizes_the_linear_layers(
    tiny_model_dir: Path, quantization: Quantization, layer: type
) -> None:
    model = load_model(ModelConfig(path=str(tiny_model_dir), quantization=quantization))
    assert quantization_of(model) == quantization
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    assert linears and all(isinstance(m, layer) for m in linears)
    assert not isinstance(model.lm_head, layer), "the output head stays in float (bitsandbytes' default)"
    if layer is bnb.nn.Linear4bit:
        assert not any(m.support_avx512bf16_for_cpu for m in linears), "exact kernels on CPU"
    assert quantization_of(load_model(ModelConfig(path=str(tiny_model_dir)))) == "none"


def test_adapter_records_its_quantized_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = LoraConfig(rank=4, alpha=8)
    methods.save_weights(_qlora(tiny_model_dir, "nf4"), cfg, tmp_path / "q")
    assert json.loads((tmp_path / "q" / QUANTIZATION_FILE).read_text()) == {"quantization": "nf4"}
    assert saved_quantization(tmp_path / "q") == "nf4"
    loaded = methods.load_for_inference(tiny_model_dir, tmp_path / "q", cfg)
    assert quantization_of(loaded) == "nf4"

    float_model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    methods.save_weights(float_model, cfg, tmp_path / "f")
    assert not (tmp_path / "f" / QUANTIZATION_FILE).exists() and saved_quantization(tmp_path / "f") == "none"


def test_a_broken_quantization_record_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / QUANTIZATION_FILE).write_text('{"quantization": "int4"}')
    with pytest.raises(ModelLoadError) as err:
        saved_quantization(tmp_path)
    assert (
        str(err.value)
        == f'{tmp_path / QUANTIZATION_FILE}: expected {{"quantization": one of none, nf4, fp4, int8}}'
    )


@pytest.mark.parametrize("quantization", ["nf4", "fp4"])
def test_4bit_merge_dequantizes_exactly(
    tiny_model_dir: Path, tmp_path: Path, quantization: Quantization
) -> None:
    model = _qlora(tiny_model_dir, quantization)
    unmerged = _logits(model)
    merged = methods.merge(model, LoraConfig())
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert (_logits(merged) - unmerged).abs().max().item() <= 1e-5
    merged.save_pretrained(tmp_path / "merged")
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "merged"
    )  # plain transformers, no bitsandbytes
    assert torch.equal(_logits(reloaded), _logits(merged))
    float_base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert (float_base - unmerged).abs().max().item() > 1e-3


def test_int8_merge_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        methods.merge(_qlora(tiny_model_dir, "int8"), LoraConfig())
    assert str(err.value) == (
        "cannot dequantise the base: model.quantization int8 (LLM.int8) also quantises the activations at "
        "run time, so no merged float model computes what the trained model does"
    )


def test_dequantize_leaves_a_float_model_alone(tiny_model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert dequantize(model) is model
