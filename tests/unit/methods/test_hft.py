"""Half Fine-Tuning: the grouping, the per-round half selection, and what the rounds do to a real training
run (frozen halves do not move at all, trained halves do, a resumed run picks the same halves)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from lmtune import methods
from lmtune.config.loader import build
from lmtune.config.methods.hft import HftConfig
from lmtune.config.run import RunConfig
from lmtune.methods.hft import (
    OUTER,
    HftRoundCallback,
    apply_round,
    blocks_of,
    group_of,
    param_groups,
    round_of,
    select_groups,
)
from lmtune.runtime.rundir import RunDir
from lmtune.train.sft import run

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
NORMS = ("input_layernorm", "post_attention_layernorm")


def llama_names(layers: int, tied: bool) -> list[str]:
    """Parameter names of a Llama-architecture causal LM (SmolLM2-135M: 30 layers, tied embeddings)."""
    names = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if tied else ["lm_head.weight"])
    for i in range(layers):
        names += [f"model.layers.{i}.self_attn.{m}.weight" for m in ATTN]
        names += [f"model.layers.{i}.mlp.{m}.weight" for m in MLP]
        names += [f"model.layers.{i}.{m}.weight" for m in NORMS]
    return names


def test_groups_follow_blocks_and_categories() -> None:
    assert group_of("model.layers.12.mlp.down_proj.weight") == (
        "model.layers.12",
        "mlp",
        "model.layers.12.mlp.down_proj",
    )
    assert group_of("model.layers.0.input_layernorm.weight")[1] == "norm"
    assert group_of("transformer.h.1.ln_2.bias")[1:] == ("norm", "transformer.h.1.ln_2")
    # a module's weight and bias are one group
    assert group_of("model.layers.0.self_attn.q_proj.bias") == group_of(
        "model.layers.0.self_attn.q_proj.weight"
    )
    assert group_of("model.embed_tokens.weight") == (OUTER, "outer", "model.embed_tokens")

    blocks = blocks_of(llama_names(2, tied=False))
    assert sorted(blocks) == [OUTER, "model.layers.0", "model.layers.1"]
    assert blocks["model.layers.1"] == {
        "self_attn": sorted(f"model.layers.1.self_attn.{m}" for m in ATTN),
        "mlp": sorted(f"model.layers.1.mlp.{m}" for m in MLP),
        "norm": sorted(f"model.layers.1.{m}" for m in NORMS),
    }
    assert blocks[OUTER] == {"outer": ["lm_head", "model.embed_tokens", "model.norm"]}


@pytest.mark.parametrize("round_index", [0, 1, 7])
@pytest.mark.parametrize("seed", [0, 42])
def test_selection_is_half_of_every_block(seed: int, round_index: int) -> None:
    layers = 30
    blocks = blocks_of(llama_names(layers, tied=True))
    selected = select_groups(blocks, seed, round_index)
    mlp_taken = Counter()
    for i in range(layers):
        block = f"model.layers.{i}"
        assert sum(f"{block}.self_attn.{m}" in selected for m in ATTN) == 2
        assert sum(f"{block}.{m}" in selected for m in NORMS) == 1
        taken = sum(f"{block}.mlp.{m}" in selected for m in MLP)
        assert taken in (1, 2)
        mlp_taken[taken] += 1
    assert mlp_taken == {1: layers // 2, 2: layers // 2}, "half of all MLP matrices train"
    assert len({"model.embed_tokens", "model.norm"} & selected) == 1, (
        "tied: the shared matrix or the final norm"
    )
    assert len(selected) == layers * (2 + 1) + 45 + 1

    untied = select_groups(blocks_of(llama_names(2, tied=False)), seed, round_index)
    assert len({"model.embed_tokens", "model.norm", "lm_head"} & untied) in (1, 2)


def test_same_seed_and_round_same_half_other_rounds_or_seeds_another() -> None:
    blocks = blocks_of(llama_names(30, tied=True))
    first = select_groups(blocks, 42, 0)
    assert select_groups(blocks, 42, 0) == first
    assert select_groups(blocks_of(reversed(llama_names(30, tied=True))), 42, 0) == first, "order-independent"
    by_round = [select_groups(blocks, 42, r) for r in range(5)]
    assert len(set(by_round)) == 5, "every round draws its own half"
    assert select_groups(blocks, 7, 0) != first
    # a new round is a new draw, not a complement: some groups train in both rounds, some in neither
    every = {g for cats in blocks.values() for groups in cats.values() for g in groups}
    assert by_round[0] & by_round[1] and every - (by_round[0] | by_round[1])


def test_round_of() -> None:
    assert [round_of(s, 3) for s in range(7)] == [0, 0, 0, 1, 1, 1, 2]


def test_prepare_selects_round_zero_of_the_torch_seed(tiny_model_dir: Path) -> None:
    cfg = HftConfig(round_steps=5)
    torch.manual_seed(11)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    named = dict(model.named_parameters())
    expected = select_groups(blocks_of(named), 11, 0)
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == {n for n in named if group_of(n)[2] in expected}
    assert {n for n in named if methods.trains(n, cfg)} == trainable
    assert 0 < len(trainable) < len(named)


def test_trains_before_any_selection_is_an_error() -> None:
    with pytest.raises(
        RuntimeError, match=r"HFT: no selection applied under .* yet \(call methods.prepare first\)"
    ):
        methods.trains("model.norm.weight", HftConfig(round_steps=987_654))


def test_a_newly_frozen_parameter_loses_its_gradient_and_moments(tiny_model_dir: Path) -> None:
    """A zeroed (not None) gradient still lets AdamW apply weight decay and momentum: freezing must drop
    the gradient itself, and the moments."""
    cfg = HftConfig()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    apply_round(model, cfg, seed=3, round_index=0)
    opt = torch.optim.AdamW(param_groups(model, cfg, 1e-2), lr=1e-2, weight_decay=0.1)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=False)  # zeros, as `set_to_none=False` trainers leave them
    trainable = apply_round(model, cfg, seed=3, round_index=1, optimizer=opt)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in trainable}
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    assert all(p not in opt.state for n, p in model.named_parameters() if n in frozen)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_param_groups_hold_every_parameter_without_decay_on_norms(tiny_model_dir: Path) -> None:
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), HftConfig())
    groups = param_groups(model, HftConfig(), 1e-3)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()), "frozen ones too, each once"
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]}
    assert no_decay == {n for n, _ in model.named_parameters() if "norm" in n}


# --- through the real training entry point ---------------------------------------------------------------

CHATS = [
    [
        {"role": "user", "content": f"she has {a} apples and buys {b} more. how many apples?"},
        {"role": "assistant", "content": f"she has {a + b} apples. #### {a + b}"},
    ]
    for a, b in [(1, 2), (3, 4), (5, 1), (2, 7), (6, 3), (8, 1), (4, 4), (9, 2)]
]


def _config(
    tmp_path: Path, model_dir: Path, name: str, sections: dict[str, Any] | None = None, **trainer: Any
) -> RunConfig:
    data = tmp_path / "chats.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"messages": CHATS[i % 8]}) + "\n" for i in range(40)))
    return build(
        RunConfig,
        {
            "name": name,
            "output_dir": str(tmp_path / "runs"),
            "seed": 5,
            "model": {"path": str(model_dir)},
            "data": {"sources": [{"path": str(data)}], "max_length": 64, "eval_size": 4},
            "method": {"type": "hft", "round_steps": 2},
            "trainer": {
                "max_steps": 6,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "weight_decay": 0.1,
                "lr_scheduler": "constant",
                "logging_steps": 1,
                "save_steps": 3,
                "device": "cpu",
            }
            | trainer,
        }
        | (sections or {}),
    )


class StepRecorder(TrainerCallback):
    """Per optimizer step: which parameters could train, and which actually changed in the step."""

    def __init__(self) -> None:
        self.steps: list[tuple[set[str], set[str]]] = []
        self.state_keys_after_step: list[set[str]] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        named = kwargs["model"].named_parameters()
        self._before = {n: p.detach().clone() for n, p in named}
        self._trainable = {n for n, p in kwargs["model"].named_parameters() if p.requires_grad}

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        changed = {n for n, p in kwargs["model"].named_parameters() if not torch.equal(p, self._before[n])}
        self.steps.append((self._trainable, changed))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        opt = getattr(kwargs["optimizer"], "optimizer", kwargs["optimizer"])
        names = {id(p): n for n, p in kwargs["model"].named_parameters()}
        self.state_keys_after_step.append({names[id(p)] for p in opt.state})


def _round_names(model: torch.nn.Module, seed: int, round_index: int) -> set[str]:
    named = dict(model.named_parameters())
    selected = select_groups(blocks_of(named), seed, round_index)
    return {n for n in named if group_of(n)[2] in selected}


def test_frozen_half_is_bit_for_bit_unchanged_and_trained_half_changes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    cfg = _config(tmp_path, tiny_model_dir, "rounds")
    recorder = StepRecorder()
    run(cfg, callbacks=[recorder])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    expected = [_round_names(model, cfg.seed, round_of(step, 2)) for step in range(6)]
    assert len(recorder.steps) == 6
    for step, (trainable, changed) in enumerate(recorder.steps):
        assert trainable == expected[step], f"step {step + 1} trains round {round_of(step, 2)}'s half"
        # with weight decay 0.1 and momentum from earlier rounds, any leftover gradient would move it
        assert changed == trainable, f"step {step + 1}: exactly the selected half moved"
    paused = expected[0] - expected[2]
    assert paused, "some parameters trained in round 0 and were frozen in round 1"
    # the optimizer keeps moments for the current half only: at the end of round 0 it drops those of the
    # parameters round 1 freezes, and keeps those of the ones that go on training
    assert recorder.state_keys_after_step[0] == expected[0]
    assert recorder.state_keys_after_step[1] == expected[0] & expected[2]
    assert recorder.state_keys_after_step[2] == expected[2]


def test_resumed_run_picks_the_same_halves_and_the_same_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    whole = _config(tmp_path, tiny_model_dir, "whole")
    run(whole)

    class StopAt3(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            control.should_training_stop = state.global_step == 3

    cut = _config(tmp_path, tiny_model_dir, "cut")
    run(cut, callbacks=[StopAt3()])
    recorder = StepRecorder()
    result = run(cut, resume=True, callbacks=[recorder])  # from checkpoint-3: mid round 1
    assert result.steps == 6
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert [t for t, _ in recorder.steps] == [_round_names(model, cut.seed, r) for r in (1, 2, 2)]

    a = load_file(RunDir.for_config(whole).model / "model.safetensors")
    b = load_file(RunDir.for_config(cut).model / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_callback_applies_the_round_of_the_resumed_step(tiny_model_dir: Path) -> None:
    cfg = HftConfig(round_steps=3)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    callback = HftRoundCallback(model, cfg)
    args = TrainingArguments(output_dir="unused", seed=123, use_cpu=True, report_to=[])
    callback.on_train_begin(args, TrainerState(global_step=7), TrainerControl())
    assert callback.round == 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _round_names(model, 123, 2)
    assert trainable == set(apply_round(model, cfg, 123, 2)), "the selection function gives the same half"
    callback.on_step_end(args, TrainerState(global_step=8), TrainerControl())
    assert callback.round == 2, "mid-round: no re-selection"
    callback.on_step_end(args, TrainerState(global_step=9), TrainerControl())
    assert callback.round == 3
    assert {n for n, p in model.named_parameters() if p.requires_grad} == _round_names(model, 123, 3)


def test_evaluate_and_export_take_the_trained_model_like_full_fine_tuning(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from lmtune.evaluate.run import run as evaluate
    from lmtune.export.run import run as export

    stages = {
        "evaluate": {"max_samples": 2, "max_new_tokens": 4, "batch_size": 2},
        "export": {"check_prompts": 2, "check_max_new_tokens": 4},
    }
    cfg = _config(tmp_path, tiny_model_dir, "stages", sections=stages, max_steps=2, save_steps=2)
    run(cfg)
    rundir = RunDir.for_config(cfg)
    assert (rundir.model / "model.safetensors").is_file() and not rundir.adapter.exists()

    result = evaluate(rundir)
    assert result.base is not None and result.tuned["eval_loss"] != result.base["eval_loss"]
    exported = export(rundir)
    assert exported.merged and exported.path == rundir.merged and exported.check.identical
