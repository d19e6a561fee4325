"""Fine-tuning mixture-of-experts models (tiny random Mixtral and Qwen3-MoE): LoRA on the fused expert
weights and on attention, the router load-balancing loss in the training loss and in metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from moe_runs import records, run_config
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerControl, TrainerState, TrainingArguments

from lmtune import methods
from lmtune.config.methods.lora import LoraConfig
from lmtune.runtime.rundir import RunDir
from lmtune.runtime.tiny import save_tiny_moe
from lmtune.train import moe
from lmtune.train.sft import run

ARCHS = ["mixtral", "qwen3_moe"]
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


@pytest.fixture(scope="module", params=ARCHS)
def moe_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_moe(tmp_path_factory.mktemp(request.param) / "model", request.param)


def _ids() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(3, 500, (2, 12))


def test_lora_targets_attention_and_each_expert_of_the_fused_weights(moe_dir: Path) -> None:
    cfg = LoraConfig(rank=4, alpha=8, target_modules=["q_proj", "v_proj"], target_parameters=EXPERTS)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(moe_dir), cfg)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == {n for n in named if methods.trains(n, cfg)}
    stems = {n.split("model.layers.")[1].split(".lora_")[0] for n in trainable}
    # PEFT nests one wrapper per targeted parameter: the outer adapts down_proj, the inner gate_up_proj.
    assert stems == {
        f"{i}.{m}"
        for i in (0, 1)
        for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.experts", "mlp.experts.base_layer")
    }
    experts = model.base_model.model.model.layers[0].mlp.experts
    num_experts = model.config.num_experts
    assert experts.lora_A["default"].weight.shape[0] == 4 * num_experts, "one rank-4 update per expert"
    assert not any(p.requires_grad for n, p in named.items() if ".mlp.gate." in n), "routers stay frozen"


def test_lora_on_moe_trains_through_sft_run_and_logs_the_router_aux_loss(
    moe_dir: Path, tmp_path: Path
) -> None:
    method = {
        "type": "lora",
        "rank": 4,
        "alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        "target_parameters": EXPERTS,
    }
    cfg = run_config(tmp_path, moe_dir, method)
    run(cfg)
    train = records(cfg, "train")
    assert [r["step"] for r in train] == [3, 6, 9, 12]
    assert train[-1]["loss"] < train[0]["loss"], "loss falls"
    assert all(math.isfinite(r["router_aux_loss"]) and r["router_aux_loss"] > 0 for r in train)
    assert all("router_aux_loss" not in r for r in records(cfg, "eval")), "eval loss is the LM loss alone"

    saved = load_file(RunDir.for_config(cfg).adapter / "adapter_model.safetensors")
    assert any(".mlp.experts.lora_A." in k for k in saved) and any(
        ".mlp.experts.base_layer.lora_B." in k for k in saved
    )
    assert all(".lora_" in k for k in saved), "only the adapter is saved"


def test_full_fine_tune_uses_the_configured_aux_weight(moe_dir: Path, tmp_path: Path) -> None:
    cfg = run_config(tmp_path, moe_dir, {"type": "full"}, learning_rate=1e-3, router_aux_loss_coef=0.25)
    run(cfg)
    train = records(cfg, "train")
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(r["router_aux_loss"] > 0 for r in train)
    saved = AutoModelForCausalLM.from_pretrained(RunDir.for_config(cfg).model)
    assert saved.config.router_aux_loss_coef == 0.25
    assert not saved.config.output_router_logits, "inference does not compute router losses"


def _callback_events() -> tuple[TrainingArguments, TrainerState, TrainerControl]:
    return (
        TrainingArguments(output_dir="unused", use_cpu=True, report_to=[]),
        TrainerState(),
        TrainerControl(),
    )


def test_router_aux_loss_is_added_to_training_forwards_only(moe_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(moe_dir)
    ids = _ids()
    model.train()
    plain = model(ids, labels=ids)
    assert plain.aux_loss is None

    (callback,) = [c for c in moe.callbacks(model, coef=0.5) if isinstance(c, moe.RouterAuxLoss)]
    args, state, control = _callback_events()
    callback.on_train_begin(args, state, control, model=model)
    out = model(ids, labels=ids)
    assert out.aux_loss is not None and out.aux_loss.item() > 0
    assert out.loss.item() == pytest.approx(plain.loss.item() + 0.5 * out.aux_loss.item(), rel=1e-6)
    second = model(ids, labels=ids)
    model.eval()
    assert model(ids, labels=ids).aux_loss is None, "evaluation forwards carry no aux loss"

    logs = {"loss": 1.0}
    callback.on_log(args, state, control, logs=logs)
    mean = (out.aux_loss.item() + second.aux_loss.item()) / 2
    assert logs["router_aux_loss"] == pytest.approx(mean, abs=1e-6)
    eval_logs = {"eval_loss": 1.0}
    callback.on_log(args, state, control, logs=eval_logs)
    assert "router_aux_loss" not in eval_logs

    callback.on_train_end(args, state, control)
    model.train()
    assert model(ids, labels=ids).aux_loss is None, "hooks removed after training"


def test_dense_models_get_no_router_callback(tiny_model_dir: Path) -> None:
    assert moe.callbacks(AutoModelForCausalLM.from_pretrained(tiny_model_dir), coef=None) == []
