"""The non-finite guard: a NaN/inf loss, gradient or weight stops training naming the step, and nothing
non-finite is ever saved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from lmtune import methods
from lmtune.config.run import RunConfig
from lmtune.errors import TrainingError
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import build_trainer, run


def _saved_tensors_are_finite(root: Path) -> int:
    files = list(root.rglob("*.safetensors"))
    for f in files:
        for name, t in load_file(f).items():
            assert torch.isfinite(t).all(), f"{f}: {name} is not finite"
    return len(files)


def test_exploding_run_stops_at_the_first_non_finite_loss(run_config: Callable[..., RunConfig]) -> None:
    # Adam moves every LoRA B weight by ~lr on step 1: at lr 1e30 the next forward pass overflows.
    cfg = run_config(trainer={"learning_rate": 1e30, "save_steps": 1, "logging_steps": 1, "max_steps": 5})
    rundir = RunDir.for_config(cfg)
    with pytest.raises(TrainingError) as err:
        run(cfg)
    assert str(err.value) == (
        "training stopped at step 2: non-finite loss (nan); nothing from this step was saved (the last "
        f"complete checkpoint is {rundir.checkpoints / 'checkpoint-1'}). Lower trainer.learning_rate, check "
        "the data, or train in float32"
    )
    assert [p.name for p in rundir.checkpoints.iterdir()] == ["checkpoint-1"]
    assert not rundir.adapter.exists() and not rundir.model.exists(), "no final weights after a failure"
    assert _saved_tensors_are_finite(rundir.root) == 1


def _trainer(tiny_model_dir: Path, make_rows: Callable[..., Any], cfg: RunConfig) -> tuple[Any, Any, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg.method)
    rundir = RunDir.for_config(cfg)
    trainer, guard = build_trainer(model, tokenizer, make_rows(16), None, cfg, rundir)
    return trainer, guard, model


def test_a_nan_loss_mid_run_is_caught_before_that_step_is_saved(
    tiny_model_dir: Path, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    cfg = run_config(trainer={"save_steps": 1, "max_steps": 6})
    trainer, guard, model = _trainer(tiny_model_dir, make_rows, cfg)
    calls = {"n": 0}

    def poison(module: Any, args: Any, output: Any) -> Any:
        if module.training:
            calls["n"] += 1
            if calls["n"] == 3:
                output.loss = output.loss * float("nan")
        return output

    # prepended: it runs before the guard's hook, as a NaN made inside the model would
    model.register_forward_hook(poison, prepend=True)
    with pytest.raises(TrainingError, match=r"^training stopped at step 3: non-finite loss \(nan\); "):
        trainer.train()
    guard.detach()
    ckpts = RunDir.for_config(cfg).checkpoints
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert _saved_tensors_are_finite(ckpts) == 2


def test_a_non_finite_gradient_with_a_finite_loss_is_caught(
    tiny_model_dir: Path, make_rows: Callable[..., Any], run_config: Callable[..., RunConfig]
) -> None:
    cfg = run_config(trainer={"max_steps": 4})
    trainer, guard, model = _trainer(tiny_model_dir, make_rows, cfg)
    name, param = next((n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n)
    calls = {"n": 0}

    def inf_on_second_step(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return grad * float("inf") if calls["n"] == 2 else grad

    param.register_hook(inf_on_second_step)
    with pytest.raises(TrainingError) as err:
        trainer.train()
    guard.detach()
    assert str(err.value).startswith(f"training stopped at step 2: non-finite gradient in {name}; ")
    assert torch.isfinite(param).all(), "the optimizer never applied the bad gradient"
