"""QLoRA on CUDA: a 4-bit NF4 base on the GPU, trained through the real trainer, evaluated and exported
(merged through the exact dequantisation). Skipped without CUDA; run with `pytest -m gpu`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.runtime.rundir import RunDir

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_qlora_nf4_trains_evaluates_and_exports_on_cuda(tiny_model_dir: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    from lmtune import methods
    from lmtune.evaluate.run import run as evaluate
    from lmtune.export.run import run as export
    from lmtune.runtime.load import load_model
    from lmtune.runtime.quantize import quantization_of
    from lmtune.train.sft import run as train

    chat = [
        {"role": "user", "content": "how many cats?"},
        {"role": "assistant", "content": "two cats. #### 2"},
    ]
    chats = tmp_path / "chats.jsonl"
    chats.write_text((json.dumps({"messages": chat}) + "\n") * 12)
    cfg = build(
        RunConfig,
        {
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(tiny_model_dir), "quantization": "nf4"},
            "data": {"sources": [{"path": str(chats)}], "eval_size": 2},
            "method": {"type": "lora", "rank": 4, "alpha": 8},
            "trainer": {"max_steps": 8, "batch_size": 4, "learning_rate": 1e-2, "device": "cuda"},
            "evaluate": {"max_samples": 2, "max_new_tokens": 4, "batch_size": 2},
            "export": {"check_prompts": 2, "check_max_new_tokens": 4},
        },
    )
    base = load_model(cfg.model)
    layer = base.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.device.type == "cuda"
    model = methods.prepare(base, cfg.method)
    assert quantization_of(model) == "nf4"
    del base, model

    trained = train(cfg)
    assert trained.steps == 8 and trained.train_loss is not None
    rundir = RunDir.for_config(cfg)
    assert json.loads((rundir.adapter / "base_quantization.json").read_text()) == {"quantization": "nf4"}
    result = evaluate(rundir)
    assert result.base is not None and result.tuned["eval_loss"] < result.base["eval_loss"]
    exported = export(rundir)  # raises ExportCheckError unless the merged folder answers identically
    assert exported.merged and exported.check.identical
