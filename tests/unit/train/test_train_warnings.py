"""A clean console: training and reloading a LoRA run raise no deprecation warning about gradient
(activation) checkpointing — neither from lmtune's own calls (which use transformers' current
`activation_checkpointing` API) nor from PEFT's, which lmtune silences where it calls PEFT."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest

from lmtune.config.run import RunConfig
from lmtune.methods import peft_adapter
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import run


def _checkpointing_deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "checkpointing" in str(w.message)
    ]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_and_reloading_raise_no_checkpointing_deprecation(
    run_config: Callable[..., RunConfig], checkpointing: bool
) -> None:
    cfg = run_config(trainer={"max_steps": 2, "save_steps": 2, "gradient_checkpointing": checkpointing})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # also the ones a filter (or an earlier test) would hide
        result = run(cfg)
        reloaded = peft_adapter.load(cfg.model.path, RunDir.for_config(cfg).adapter, cfg.method)
    assert result.steps == 2 and reloaded.peft_config["default"].r == 4
    assert _checkpointing_deprecations(caught) == []


def test_the_check_sees_the_deprecation_it_looks_for(tiny_model_dir: object) -> None:
    """Without lmtune's filter, PEFT's wrap does raise transformers' FutureWarning (so the test above
    would catch it coming back)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert any("is_gradient_checkpointing" in line for line in _checkpointing_deprecations(caught))
