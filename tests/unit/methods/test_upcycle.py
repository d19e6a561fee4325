"""Dense-to-MoE upcycling: equal to the dense model at initialisation, standard MoE layouts, what trains,
errors, and a real training run through `sft.run`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from moe_runs import records, run_config, save_scaled
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from lmtune import methods
from lmtune.config.methods.upcycle import UpcycleConfig
from lmtune.errors import ConfigError
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.tiny import save_tiny_moe
from lmtune.train.sft import run


@pytest.fixture(scope="module")
def dense_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_scaled(tiny_model_dir, tmp_path_factory.mktemp("upcycle") / "dense")


@pytest.fixture(scope="module")
def ids(tiny_tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    texts = ["how many apples does she have? she has three apples and two books. #### 42", "paris is a city"]
    return tiny_tokenizer(texts, return_tensors="pt", padding=True)["input_ids"]


def _dense(dense_dir: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize(
    ("cfg", "arch"),
    [
        (UpcycleConfig(num_experts=4, top_k=2, router_init_std=1.0), "MixtralForCausalLM"),
        (UpcycleConfig(num_experts=8, top_k=1, router_init_std=1.0), "MixtralForCausalLM"),
        (UpcycleConfig(num_experts=3, top_k=2, layers=[1], router_init_std=1.0), "Qwen2MoeForCausalLM"),
    ],
    ids=["mixtral-top2", "mixtral-top1", "qwen2moe-layer1"],
)
def test_upcycled_model_equals_the_dense_model_at_initialisation(
    dense_dir: Path, ids: torch.Tensor, cfg: UpcycleConfig, arch: str
) -> None:
    dense = _dense(dense_dir)
    torch.manual_seed(0)
    moe = methods.prepare(_dense(dense_dir), cfg).eval()
    assert type(moe).__name__ == arch
    with torch.no_grad():
        expected = dense(ids).logits
        out = moe(ids, output_router_logits=True)
    assert (out.logits - expected).abs().max().item() <= 1e-5
    # The check is not vacuous: the router really spreads tokens over several experts...
    top1 = out.router_logits[-1].argmax(dim=-1)
    assert top1.unique().numel() > 1
    # ... and the upcycled MLPs matter: without them the logits are far from the dense ones.
    layer = moe.model.layers[cfg.layers[0] if cfg.layers else 0]
    with torch.no_grad():
        layer.mlp.experts.down_proj.zero_()
        if hasattr(layer.mlp, "shared_expert"):
            layer.mlp.shared_expert.down_proj.weight.zero_()
        assert (moe(ids).logits - expected).abs().max().item() > 1e-2


def test_mixtral_layout_experts_are_exact_copies_and_router_is_random(dense_dir: Path) -> None:
    dense = _dense(dense_dir)
    moe = methods.prepare(_dense(dense_dir), UpcycleConfig(num_experts=4, top_k=2))
    mlp = dense.model.layers[0].mlp
    block = moe.model.layers[0].mlp
    assert moe.config.model_type == "mixtral" and moe.config.num_local_experts == 4
    assert moe.config.num_experts_per_tok == 2
    gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    for e in range(4):
        assert torch.equal(block.experts.gate_up_proj[e], gate_up)
        assert torch.equal(block.experts.down_proj[e], mlp.down_proj.weight)
    assert block.gate.weight.shape == (4, dense.config.hidden_size)
    assert 0.01 < block.gate.weight.std().item() < 0.03, "router_init_std 0.02"
    assert torch.equal(
        moe.model.layers[1].self_attn.q_proj.weight, dense.model.layers[1].self_attn.q_proj.weight
    )
    assert torch.equal(moe.lm_head.weight, dense.lm_head.weight)


def test_qwen2moe_layout_keeps_other_layers_dense(dense_dir: Path) -> None:
    moe = methods.prepare(_dense(dense_dir), UpcycleConfig(num_experts=3, layers=[1]))
    assert moe.config.model_type == "qwen2_moe" and moe.config.mlp_only_layers == [0]
    assert type(moe.model.layers[0].mlp).__name__ == "Qwen2MoeMLP"
    block = moe.model.layers[1].mlp
    assert block.experts.gate_up_proj.shape[0] == 3
    assert torch.equal(block.shared_expert_gate.weight, torch.zeros_like(block.shared_expert_gate.weight))


def test_expert_noise_makes_experts_differ(dense_dir: Path, ids: torch.Tensor) -> None:
    dense = _dense(dense_dir)
    moe = methods.prepare(_dense(dense_dir), UpcycleConfig(num_experts=2, expert_noise=0.1)).eval()
    experts = moe.model.layers[0].mlp.experts.gate_up_proj
    assert (experts[0] - experts[1]).abs().max().item() > 1e-3
    with torch.no_grad():
        assert (moe(ids).logits - dense(ids).logits).abs().max().item() > 1e-5


@pytest.mark.parametrize("layers", [None, [1]], ids=["every-layer", "layer1"])
def test_train_moe_trains_only_the_upcycled_blocks(dense_dir: Path, ids: torch.Tensor, layers: Any) -> None:
    cfg = UpcycleConfig(num_experts=3, top_k=2, layers=layers, train="moe")
    moe = methods.prepare(_dense(dense_dir), cfg)
    named = dict(moe.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    chosen = layers or [0, 1]
    assert trainable == {n for n in named if any(n.startswith(f"model.layers.{i}.mlp.") for i in chosen)}
    assert {n.split(".mlp.")[1] for n in trainable} >= {
        "gate.weight",
        "experts.gate_up_proj",
        "experts.down_proj",
    }
    before = {n: p.detach().clone() for n, p in named.items()}
    opt = torch.optim.AdamW([named[n] for n in trainable], lr=1e-2)
    moe.train()
    for _ in range(2):
        moe(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    assert {n for n, p in moe.named_parameters() if not torch.equal(p, before[n])} == trainable


def test_config_errors(dense_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"top_k \(5\) must be at most num_experts \(4\)"):
        UpcycleConfig(num_experts=4, top_k=5)
    with pytest.raises(ValidationError, match=r"layers must be distinct non-negative indices, got \[1, 1\]"):
        UpcycleConfig(layers=[1, 1])
    with pytest.raises(ConfigError, match=r"method\.layers: 5 is out of range: the model has 2 layers"):
        methods.prepare(_dense(dense_dir), UpcycleConfig(layers=[0, 5]))
    mixtral = AutoModelForCausalLM.from_pretrained(save_tiny_moe(tmp_path / "mixtral", "mixtral"))
    with pytest.raises(ConfigError, match="cannot convert this model exactly: architecture 'mixtral'"):
        methods.prepare(mixtral, UpcycleConfig())


def test_upcycle_trains_through_sft_run_and_saves_a_standard_moe_folder(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = run_config(
        tmp_path, tiny_model_dir, {"type": "upcycle", "num_experts": 4, "top_k": 2}, learning_rate=3e-3
    )
    result = run(cfg)
    train = records(cfg, "train")
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert train[-1]["loss"] < train[0]["loss"], "loss falls"
    assert all(math.isfinite(r["router_aux_loss"]) and r["router_aux_loss"] > 0 for r in train)

    folder = RunDir.for_config(cfg).model
    assert result.weights_path == folder and (folder / "model.safetensors").is_file()
    reloaded = AutoModelForCausalLM.from_pretrained(folder)  # plain transformers, no lmtune needed
    assert type(reloaded).__name__ == "MixtralForCausalLM" and reloaded.config.num_local_experts == 4
    via_method = methods.load_for_inference(tiny_model_dir, folder, cfg.method)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(ids).logits, via_method(ids).logits)


def test_resuming_an_upcycled_run_restores_the_experts_exactly(tiny_model_dir: Path, tmp_path: Path) -> None:
    """transformers' Trainer resumes MoE checkpoints without converting the expert layout
    (huggingface/transformers#48805); `lmtune.train.moe.MoeCheckpointReload` reloads them."""
    method = {"type": "upcycle", "num_experts": 4, "top_k": 2}
    loop: dict[str, Any] = {"learning_rate": 3e-3, "lr_scheduler": "constant"}  # same LRs whatever max_steps
    straight = run_config(tmp_path / "a", tiny_model_dir, method, max_steps=6, save_steps=3, **loop)
    run(straight)
    first = run_config(tmp_path / "b", tiny_model_dir, method, max_steps=3, save_steps=3, **loop)
    run(first)
    final = AutoModelForCausalLM.from_pretrained(RunDir.for_config(first).model).state_dict()
    run(
        first, resume=True
    )  # already at its last step: nothing trains, the (reloaded) weights are saved again
    again = AutoModelForCausalLM.from_pretrained(RunDir.for_config(first).model).state_dict()
    assert all(torch.equal(final[k], again[k]) for k in final)
    resumed = run_config(tmp_path / "b", tiny_model_dir, method, max_steps=6, save_steps=3, **loop)
    run(resumed, resume=True)
    a = AutoModelForCausalLM.from_pretrained(RunDir.for_config(straight).model).state_dict()
    b = AutoModelForCausalLM.from_pretrained(RunDir.for_config(resumed).model).state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert records(resumed, "train")[-1]["loss"] == pytest.approx(
        records(straight, "train")[-1]["loss"], rel=1e-6
    )
