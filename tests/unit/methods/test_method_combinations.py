"""Combinations of method and run settings that cannot work are refused when the config is loaded, with
one clear line; the ones that work load."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmtune.config.deploy import ExportConfig
from lmtune.config.loader import load
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError

ADAPTERS = "lora, ia3, vera, prompt_tuning, prefix_tuning"
LEAVE_MERGE = "leave export.merge unset (the adapter is exported instead) or set it to false"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["method.type=full", "model.quantization=nf4"],
            "method 'full' trains the base model's own weights, which cannot be trained while quantized "
            f"(model.quantization: nf4); use an adapter method ({ADAPTERS}) on the quantized base, or "
            "model.quantization: none",
        ),
        (
            ["method.type=freeze", "method.trainable=[lm_head]", "model.quantization=int8"],
            "method 'freeze' trains the base model's own weights, which cannot be trained while quantized "
            f"(model.quantization: int8); use an adapter method ({ADAPTERS}) on the quantized base, or "
            "model.quantization: none",
        ),
        (
            ["method.type=loha", "model.quantization=fp4"],
            "method 'loha' does not support a quantized base (model.quantization: fp4); "
            f"use one of {ADAPTERS}",
        ),
        (
            ["method.type=lokr", "model.quantization=nf4"],
            "method 'lokr' does not support a quantized base (model.quantization: nf4); "
            f"use one of {ADAPTERS}",
        ),
        (
            ["method.type=lora", "method.init=pissa", "model.quantization=nf4"],
            "method.init 'pissa' rewrites the base weights, which a quantized base cannot hold exactly "
            "(model.quantization: nf4), so the saved adapter would not reproduce the trained model; use "
            "init: default or gaussian",
        ),
        (
            ["method.type=lora", "method.use_dora=true", "model.quantization=int8"],
            "method.use_dora is not supported on an int8 base (model.quantization: int8); use nf4 or fp4",
        ),
        (
            ["method.type=prompt_tuning", "export.merge=true"],
            "export.merge: true, but method 'prompt_tuning' cannot be merged into the base weights; "
            f"{LEAVE_MERGE}",
        ),
        (
            ["method.type=prefix_tuning", "export.merge=true"],
            "export.merge: true, but method 'prefix_tuning' cannot be merged into the base weights; "
            f"{LEAVE_MERGE}",
        ),
        (
            ["method.type=lora", "model.quantization=int8", "export.merge=true"],
            "export.merge: true, but model.quantization int8 (LLM.int8) also quantises the activations at "
            f"run time, so no merged float model computes what the trained model does; {LEAVE_MERGE}",
        ),
        (
            ["method.type=prompt_tuning", "data.packing=true"],
            "method 'prompt_tuning' cannot train on packed rows (data.packing: true): its virtual tokens are "
            "prepended once per row, not to each example packed into it; set data.packing: false",
        ),
        (
            ["method.type=prefix_tuning", "data.packing=true"],
            "method 'prefix_tuning' cannot train on packed rows (data.packing: true): its virtual tokens are "
            "prepended once per row, not to each example packed into it; set data.packing: false",
        ),
        (
            ["method.type=lora", "method.use_dora=true", "method.init=olora"],
            "config field 'method.lora': use_dora cannot be combined with init 'olora': a DoRA update is not "
            "linear in A and B, so the adapter trained on the residual base cannot be converted for the "
            "original base; use init: default or gaussian with DoRA",
        ),
        (
            ["method.type=ia3", "method.feedforward_modules=[down_proj]"],
            "config field 'method.ia3': feedforward_modules must be a subset of target_modules (set both), "
            "got ['down_proj']",
        ),
        (
            ["method.type=freeze", "method.trainable=[]"],
            "config field 'method.freeze.trainable': List should have at least 1 item after validation, "
            "not 0",
        ),
        (
            ["method.type=lora", "method.loraplus_lr_ratio=0"],
            "config field 'method.lora.loraplus_lr_ratio': Input should be greater than 0",
        ),
    ],
)
def test_invalid_combination_is_refused_at_config_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(RunConfig, None, overrides)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "overrides",
    [
        ["method.type=lora", "model.quantization=nf4"],
        ["method.type=lora", "method.use_dora=true", "model.quantization=fp4"],
        ["method.type=lora", "model.quantization=int8", "export.merge=false"],
        ["method.type=ia3", "model.quantization=int8"],
        ["method.type=vera", "model.quantization=nf4"],
        ["method.type=prompt_tuning", "model.quantization=nf4"],
        ["method.type=prefix_tuning", "export.merge=false"],
        ["method.type=lora", "method.init=pissa", "method.use_rslora=true", "method.loraplus_lr_ratio=16"],
        ["method.type=freeze", "method.trainable=[model.layers.29, lm_head]"],
    ],
)
def test_valid_combination_loads(overrides: list[str]) -> None:
    cfg = load(RunConfig, None, overrides)
    assert cfg.method.type == overrides[0].split("=")[1]


def test_export_merges_by_default_only_when_the_run_can() -> None:
    """`export.merge` unset means "merge when the run can" (what export does: test_method_stages)."""
    assert ExportConfig().merge is None
    assert load(RunConfig, None, ["method.type=prompt_tuning"]).export.merge is None
    assert load(RunConfig, None, ["export.merge=true"]).export.merge is True


def test_pipeline_refuses_to_serve_an_adapter_before_running_anything(tmp_path: Path) -> None:
    from lmtune.pipeline import run

    cfg = load(RunConfig, None, ["method.type=prompt_tuning", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert str(err.value) == (
        "pipeline.stages includes serve, but the export will be an adapter (method 'prompt_tuning' cannot "
        "be merged into the base weights) and the server serves merged model folders; drop serve from "
        "pipeline.stages"
    )
    assert not any(tmp_path.iterdir()), "nothing ran"
