"""Mixture of LoRA experts: the mixture math, the gate and experts train apart, base view, save/load,
errors, and a run through `sft.run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from moe_runs import records, run_config, save_scaled
from transformers import AutoModelForCausalLM

from lmtune import methods
from lmtune.config.methods.lora_experts import LoraExpertsConfig
from lmtune.errors import ConfigError, ModelLoadError
from lmtune.methods.lora_experts import CONFIG_NAME, WEIGHTS_NAME
from lmtune.methods.lora_experts_layer import LoraExpertsLinear, lora_mixture
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import run

CFG = LoraExpertsConfig(num_experts=3, rank=4, alpha=8)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_scaled(tiny_model_dir, tmp_path_factory.mktemp("lora_experts") / "model")


def _ids() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(3, 500, (2, 12))


def _trained(model_dir: Path, steps: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(model_dir), CFG)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = _ids()
    model.train()
    for _ in range(steps):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def test_lora_mixture_matches_the_per_expert_sum() -> None:
    torch.manual_seed(0)
    x, gate = torch.randn(2, 5, 6), torch.randn(3, 6)
    a, b = torch.randn(3, 2, 6), torch.randn(3, 7, 2)
    g = torch.softmax(x @ gate.T, dim=-1)
    expected = sum(g[..., k : k + 1] * (x @ a[k].T @ b[k].T) for k in range(3)) * 0.5
    assert torch.allclose(lora_mixture(x, gate, a, b, 0.5), expected, atol=1e-5)


def test_wraps_each_target_linear_and_starts_as_the_base(model_dir: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    model = methods.prepare(
        AutoModelForCausalLM.from_pretrained(model_dir),
        CFG.model_copy(update={"target_modules": ["q_proj", "down_proj"]}),
    )
    wrapped = {n for n, m in model.named_modules() if isinstance(m, LoraExpertsLinear)}
    assert wrapped == {f"model.layers.{i}.{m}" for i in (0, 1) for m in ("self_attn.q_proj", "mlp.down_proj")}
    q = model.model.layers[0].self_attn.q_proj
    assert (
        q.lora_A.shape == (3, 4, 64) and q.lora_B.shape == (3, 64, 4) and q.lora_gate.weight.shape == (3, 64)
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{w}.{p}" for w in wrapped for p in ("lora_A", "lora_B", "lora_gate.weight")}
    with torch.no_grad():
        assert torch.equal(model.eval()(_ids()).logits, base(_ids()).logits), "B = 0: the base function"


def test_gate_trains_and_experts_learn_different_weights(model_dir: Path) -> None:
    model = _trained(model_dir)
    layer = model.model.layers[1].self_attn.v_proj
    assert layer.lora_gate.weight.abs().max().item() > 1e-3, "the gate moved from its zero start"
    for i in range(3):
        for j in range(i + 1, 3):
            assert (layer.lora_B[i] - layer.lora_B[j]).abs().max().item() > 1e-3
            assert (layer.lora_A[i] - layer.lora_A[j]).abs().max().item() > 1e-3
    # The trained gate routes tokens differently: mixture weights vary from token to token.
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, a, o: seen.append(torch.softmax(m.lora_gate(a[0]), -1)))
    with torch.no_grad():
        model(_ids())
    handle.remove()
    assert seen[0].reshape(-1, 3).std(dim=0).max().item() > 1e-3


def test_base_view_computes_the_base_function(model_dir: Path) -> None:
    model = _trained(model_dir, steps=3)
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        tuned = model(_ids()).logits
        with methods.base_view(model, CFG):
            assert torch.equal(model(_ids()).logits, base(_ids()).logits)
        assert torch.equal(model(_ids()).logits, tuned), "experts back on after the context"
        assert (tuned - base(_ids()).logits).abs().max().item() > 1e-3


def test_saved_layout_and_mismatched_config(model_dir: Path, tmp_path: Path) -> None:
    model = _trained(model_dir, steps=2)
    methods.save_weights(model, CFG, tmp_path / "w")
    assert {p.name for p in (tmp_path / "w").iterdir()} == {WEIGHTS_NAME, CONFIG_NAME}
    assert json.loads((tmp_path / "w" / CONFIG_NAME).read_text())["num_experts"] == 3
    loaded = methods.load_for_inference(model_dir, tmp_path / "w", CFG)
    assert not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ModelLoadError, match="saved experts do not match method config"):
        methods.load_for_inference(
            model_dir, tmp_path / "w", CFG.model_copy(update={"target_modules": ["q_proj"]})
        )


def test_not_mergeable_and_errors(model_dir: Path) -> None:
    assert not methods.mergeable(CFG) and methods.is_adapter(CFG)
    with pytest.raises(ConfigError, match="method lora_experts cannot be merged: its per-token gate"):
        methods.merge(torch.nn.Linear(2, 2), CFG)
    bad = CFG.model_copy(update={"target_modules": ["nope"]})
    with pytest.raises(ConfigError, match=r"method.target_modules: \['nope'\] matches no linear layer"):
        methods.prepare(AutoModelForCausalLM.from_pretrained(model_dir), bad)


def test_lora_experts_trains_through_sft_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = run_config(
        tmp_path, tiny_model_dir, {"type": "lora_experts", "num_experts": 3, "rank": 4, "alpha": 8}
    )
    result = run(cfg)
    train = records(cfg, "train")
    assert train[-1]["loss"] < train[0]["loss"], "loss falls"
    assert all("router_aux_loss" not in r for r in train), "a dense base has no router loss"
    assert result.weights_path == RunDir.for_config(cfg).adapter
    assert (result.weights_path / WEIGHTS_NAME).is_file() and (
        result.weights_path / "tokenizer.json"
    ).is_file()
