"""LoRA's variants: rsLoRA scaling, the initialisations, PiSSA/OLoRA saved as plain LoRA, LoRA+ groups."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback, set_seed

from lmtune import methods
from lmtune.config.loader import build
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.run import RunConfig
from lmtune.methods.lora import loraplus_groups
from lmtune.methods.lora_residual import delta_adapter, doubled_rank_alpha

IDS = torch.tensor([[1, 5, 9, 40, 77, 120, 3, 8], [2, 6, 11, 50, 99, 7, 300, 2]])


def _prepared(model_dir: Path, cfg: LoraConfig) -> Any:
    set_seed(0)
    return methods.prepare(AutoModelForCausalLM.from_pretrained(model_dir), cfg)


@torch.no_grad()
def _logits(model: Any) -> torch.Tensor:
    return model.eval()(input_ids=IDS).logits


def _q_proj(model: Any) -> Any:
    return model.base_model.model.model.layers[0].self_attn.q_proj


@pytest.mark.parametrize(("use_rslora", "scale"), [(False, 8 / 4), (True, 8 / math.sqrt(4))])
def test_rslora_scales_by_alpha_over_sqrt_rank(tiny_model_dir: Path, use_rslora: bool, scale: float) -> None:
    model = _prepared(tiny_model_dir, LoraConfig(rank=4, alpha=8, use_rslora=use_rslora))
    assert _q_proj(model).scaling["default"] == pytest.approx(scale)


def test_default_and_gaussian_init_start_at_zero_update(tiny_model_dir: Path) -> None:
    base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    for init in ("default", "gaussian"):
        model = _prepared(tiny_model_dir, LoraConfig(rank=4, alpha=8, init=init))
        assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if ".lora_B." in n)
        assert torch.equal(_logits(model), base)
    gaussian = _prepared(tiny_model_dir, LoraConfig(rank=4, alpha=8, init="gaussian"))
    a = torch.cat([p.flatten() for n, p in gaussian.named_parameters() if ".lora_A." in n])
    assert a.std().item() == pytest.approx(1 / 4, rel=0.05), "gaussian init: A ~ N(0, 1/rank)"


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_and_olora_rewrite_the_base_but_start_from_its_function(
    tiny_model_dir: Path, init: str
) -> None:
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = _prepared(tiny_model_dir, LoraConfig(rank=4, alpha=8, init=init))
    residual = _q_proj(model).base_layer.weight
    assert (residual - original.model.layers[0].self_attn.q_proj.weight).abs().max() > 1e-3
    assert all(torch.count_nonzero(p) > 0 for n, p in model.named_parameters() if ".lora_B." in n)
    assert (_logits(model) - _logits(original)).abs().max().item() < 1e-5
    assert methods.base_view(model, LoraConfig(init=init)) is None, "the residual base is not the base"


def test_delta_adapter_is_the_update_on_the_original_weight() -> None:
    """dW = s (B A - B0 A0) = s [B, -B0] [A; A0], checked on random matrices."""
    gen = torch.Generator().manual_seed(0)
    a, a0 = torch.randn(4, 16, generator=gen), torch.randn(4, 16, generator=gen)
    b, b0 = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    other = torch.randn(3, generator=gen)
    out = delta_adapter(
        {"x.lora_A.weight": a, "x.lora_B.weight": b, "x.other": other},
        {"x.lora_A.weight": a0, "x.lora_B.weight": b0, "x.other": torch.zeros(3)},
    )
    assert out["x.lora_A.weight"].shape == (8, 16) and out["x.lora_B.weight"].shape == (8, 8)
    torch.testing.assert_close(out["x.lora_B.weight"] @ out["x.lora_A.weight"], b @ a - b0 @ a0)
    assert torch.equal(out["x.other"], other)


def test_doubled_rank_alpha_keeps_the_scale() -> None:
    assert doubled_rank_alpha(8, use_rslora=False) / 8 == 8 / 4
    assert doubled_rank_alpha(8, use_rslora=True) / math.sqrt(8) == pytest.approx(8 / math.sqrt(4))


@pytest.mark.parametrize(("use_rslora", "alpha"), [(False, 16.0), (True, 8 * math.sqrt(2))])
def test_pissa_adapter_is_saved_as_plain_lora_for_the_original_base(
    tiny_model_dir: Path, tmp_path: Path, use_rslora: bool, alpha: float
) -> None:
    from peft import PeftModel

    cfg = LoraConfig(rank=4, alpha=8, init="pissa", use_rslora=use_rslora)
    model = _prepared(tiny_model_dir, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.add_(0.05)
    expected = _logits(model)
    methods.save_weights(model, cfg, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert (saved["r"], saved["init_lora_weights"], saved["use_rslora"]) == (8, True, use_rslora)
    assert saved["lora_alpha"] == pytest.approx(alpha)
    # Plain PEFT on the untouched base, no lmtune involved.
    plain = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(tmp_path / "a")
    )
    assert (_logits(plain) - expected).abs().max().item() < 1e-5
    assert methods.base_view(plain, cfg) is not None, "a loaded adapter sits on the original base"


def test_loraplus_groups_put_b_at_ratio_times_the_rate(tiny_model_dir: Path) -> None:
    model = _prepared(tiny_model_dir, LoraConfig(rank=4, alpha=8, use_dora=True))
    groups = loraplus_groups(model.named_parameters(), 1e-3, 16)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 1.6e-2]
    assert {names[id(p)] for p in groups[1]["params"]} == {n for n in names.values() if ".lora_B." in n}
    rest = {names[id(p)] for p in groups[0]["params"]}
    assert rest == {n for n, p in model.named_parameters() if p.requires_grad and ".lora_B." not in n}
    assert any(".lora_magnitude_vector." in n for n in rest) and any(".lora_A." in n for n in rest)


class _OptimizerSpy(TrainerCallback):
    def __init__(self) -> None:
        self.groups: list[tuple[float, set[str]]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        names = {id(p): n for n, p in kwargs["model"].named_parameters()}
        self.groups = [
            (g["initial_lr"], {names[id(p)] for p in g["params"]}) for g in kwargs["optimizer"].param_groups
        ]


def test_loraplus_trains_with_two_optimizer_groups(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Through the real trainer (`lmtune.train.sft.run`): the optimizer has the two LoRA+ groups."""
    from lmtune.train.sft import run

    chats = tmp_path / "chats.jsonl"
    chat = [{"role": "user", "content": "how many cats?"}, {"role": "assistant", "content": "two cats."}]
    chats.write_text((json.dumps({"messages": chat}) + "\n") * 8)
    cfg = build(
        RunConfig,
        {
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(tiny_model_dir)},
            "data": {"sources": [{"path": str(chats)}], "eval_size": 0},
            "method": {"type": "lora", "rank": 4, "alpha": 8, "loraplus_lr_ratio": 16},
            "trainer": {"max_steps": 1, "batch_size": 4, "learning_rate": 1e-3, "device": "cpu"},
        },
    )
    spy = _OptimizerSpy()
    run(cfg, callbacks=[spy])
    (lr_a, a_names), (lr_b, b_names) = spy.groups
    assert (lr_a, lr_b) == (1e-3, pytest.approx(1.6e-2))
    assert b_names and all(".lora_B." in n for n in b_names)
    assert a_names and all(".lora_A." in n for n in a_names)
