"""Memory experts on the tiny model: top-k product-key routing, zero-init equivalence, learning facts with
a bit-identical frozen base, save -> load, the base view, optimizer groups, config errors, and a run
through train -> evaluate -> export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase, set_seed

from lmtune import methods
from lmtune.config.methods.memory_experts import MemoryExpertsConfig
from lmtune.errors import ConfigError
from lmtune.methods.memory_experts import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    disabled,
    memory_layers,
    parameter_count,
    resolve_layers,
)
from lmtune.methods.memory_layer import MemoryLayer, product_topk, rms

CFG = MemoryExpertsConfig(layers=[0, 1], num_keys=16, topk=4, key_dim=16, value_dim=16)

FACTS = [
    ("what is the capital city of france?", "paris is the capital of france."),
    ("who has three apples?", "she has three apples and two books."),
    ("how many cats do they have?", "they have seven cats. #### 7"),
    ("where is the river water?", "the water is in the city river."),
]


@pytest.fixture(scope="module")
def model_dir(tiny_trained_scale_dir: Path) -> Path:
    """The tiny model at a trained model's weight scale (tests/conftest.py)."""
    return tiny_trained_scale_dir


@pytest.fixture(scope="module")
def batch(tiny_tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """The facts as chats, right-padded; only the assistant turn (from its first token) is labelled."""
    texts, prompt_lens = [], []
    for question, answer in FACTS:
        chat = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        texts.append(tiny_tokenizer.apply_chat_template(chat, tokenize=False))
        prompt = tiny_tokenizer.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True)
        prompt_lens.append(len(tiny_tokenizer(prompt)["input_ids"]))
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    for row, n in enumerate(prompt_lens):
        labels[row, :n] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _base(model_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _prepared(model_dir: Path, cfg: MemoryExpertsConfig = CFG) -> torch.nn.Module:
    set_seed(0)
    return methods.prepare(_base(model_dir), cfg)


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _train(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int, lr: float = 1e-2
) -> list[float]:
    groups = methods.param_groups(model, CFG, lr)
    assert groups is not None
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained(model_dir: Path, batch: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, list[float]]:
    """The memory trained on the facts (shared by the tests that only read it)."""
    model = _prepared(model_dir)
    losses = _train(model, batch, steps=150)
    return model.eval(), losses


def test_product_topk_matches_the_closed_form() -> None:
    # s(i, j) = a[i] + b[j] over all pairs: (1,0)=5.0, (1,1)=3.5, (2,0)=3.0, (0,0)=2.0, (2,1)=1.5, (0,1)=0.5
    a = torch.tensor([0.0, 3.0, 1.0])
    b = torch.tensor([2.0, 0.5])
    scores, idx = product_topk(a, b, 2)
    assert scores.tolist() == [5.0, 3.5]
    assert idx.tolist() == [1 * 2 + 0, 1 * 2 + 1]


def test_routing_picks_k_distinct_experts_the_exact_top_k() -> None:
    torch.manual_seed(0)
    layer = MemoryLayer(hidden_size=64, num_keys=8, topk=4, key_dim=16, value_dim=8).eval()
    h = torch.randn(2, 5, 64)
    weights, idx = layer.route(h)
    assert idx.shape == weights.shape == (2, 5, 4)
    assert all(len(set(row)) == 4 for row in idx.reshape(-1, 4).tolist()), "k distinct experts per token"
    assert idx.min() >= 0 and idx.max() < layer.num_experts == 64
    # Brute force over all 64 experts: s(e = i*8 + j) = q_a.K_a[i] + q_b.K_b[j].
    q = torch.nn.functional.linear(h / rms(h), layer.query)
    q_a, q_b = q.chunk(2, dim=-1)
    full = ((q_a @ layer.keys_a.T).unsqueeze(-1) + (q_b @ layer.keys_b.T).unsqueeze(-2)).flatten(-2)
    best, expected = full.topk(4, dim=-1)
    assert torch.equal(idx, expected)
    torch.testing.assert_close(weights, best.softmax(-1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))


def test_forward_is_the_weighted_sum_of_the_selected_values() -> None:
    torch.manual_seed(0)
    layer = MemoryLayer(hidden_size=64, num_keys=8, topk=4, key_dim=16, value_dim=8).eval()
    with torch.no_grad():
        layer.values.normal_()
    h = torch.randn(3, 64) * 5
    weights, idx = layer.route(h)
    mixed = (weights.unsqueeze(-1) * layer.values[idx]).sum(-2)  # sum_e w_e V[e]
    expected = rms(h) * (mixed @ layer.out.T)  # r W_o (...)
    torch.testing.assert_close(layer(h), expected)


def test_gate_scales_the_output_by_the_closed_form_sigmoid() -> None:
    torch.manual_seed(0)
    gated = MemoryLayer(hidden_size=64, num_keys=8, topk=4, key_dim=16, value_dim=8, gate=True).eval()
    plain = MemoryLayer(hidden_size=64, num_keys=8, topk=4, key_dim=16, value_dim=8).eval()
    assert gated.gate is not None and plain.gate is None
    with torch.no_grad():
        gated.values.normal_()
        gated.gate.normal_()
        gated.center.normal_()
        plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k != "gate"})
    h = torch.randn(3, 5, 64) * 5
    g = torch.sigmoid((h / rms(h) - gated.center) @ gated.gate[:-1] + gated.gate[-1]).unsqueeze(-1)
    assert g.min() < 0.2 and g.max() > 0.8, "a spread of gate values, so the check can fail"
    torch.testing.assert_close(gated(h), g * plain(h))
    torch.testing.assert_close(plain.gate_weight(h), torch.ones(3, 5, 1))
    with torch.no_grad():
        gated.gate[-1] = -1e4
    assert gated(h).abs().max().item() == 0.0, "a shut gate lets nothing through"


def test_gated_memory_starts_at_the_base_and_trains_its_gate(
    model_dir: Path, batch: dict[str, torch.Tensor]
) -> None:
    cfg = CFG.model_copy(update={"gate": True})
    model = _prepared(model_dir, cfg)
    assert (_logits(model, batch) - _logits(_base(model_dir), batch)).abs().max().item() <= 1e-6
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == parameter_count(cfg, 64)
    assert parameter_count(cfg, 64) - parameter_count(CFG, 64) == 2 * 65, "w_g and b_g per layer"
    losses = _train(model, batch, steps=60)
    assert losses[-1] < losses[0] / 4, f"loss {losses[0]:.3f} -> {losses[-1]:.4f}"
    assert all(m.gate is not None and m.gate.abs().max() > 0 for m in memory_layers(model).values())


def test_gated_memory_saves_and_loads_identical_logits(
    model_dir: Path, batch: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    cfg = CFG.model_copy(update={"gate": True})
    model = _prepared(model_dir, cfg)
    _train(model, batch, steps=10)
    methods.save_weights(model.eval(), cfg, tmp_path / "weights")
    loaded = methods.load_for_inference(model_dir, tmp_path / "weights", cfg)
    assert (_logits(loaded, batch) - _logits(model, batch)).abs().max().item() <= 1e-6


def test_routing_centre_is_the_running_mean_of_training_tokens_only() -> None:
    torch.manual_seed(0)
    layer = MemoryLayer(hidden_size=64, num_keys=8, topk=4, key_dim=16, value_dim=8)
    first, second = torch.randn(2, 3, 64) * 4 + 1, torch.randn(5, 64) * 2
    layer.train()
    layer.route(first)
    layer.route(second)
    rows = torch.cat([first.reshape(-1, 64), second])
    torch.testing.assert_close(layer.center, (rows / rms(rows)).mean(0))
    assert layer.seen.item() == 11
    layer.eval()
    layer.route(torch.randn(4, 64))
    assert layer.seen.item() == 11, "evaluation does not move the centre"


def test_prepared_model_equals_the_base_at_initialisation(
    model_dir: Path, batch: dict[str, torch.Tensor]
) -> None:
    model = _prepared(model_dir)
    assert sorted(memory_layers(model)) == [0, 1]
    assert (_logits(model, batch) - _logits(_base(model_dir), batch)).abs().max().item() <= 1e-6
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == parameter_count(CFG, 64)
    assert all(".memory_experts." in n for n in trainable)


def test_memory_learns_the_facts_while_the_base_stays_bit_identical(
    model_dir: Path, trained: tuple[torch.nn.Module, list[float]]
) -> None:
    model, losses = trained
    assert losses[0] > 2.0 and losses[-1] < 0.05, f"loss {losses[0]:.3f} -> {losses[-1]:.4f}"
    base = dict(_base(model_dir).named_parameters())
    tuned = {n: p for n, p in model.named_parameters() if ".memory_experts." not in n}
    assert tuned.keys() == base.keys()
    assert all(torch.equal(tuned[n], base[n]) for n in base), "every base weight is bit-identical"


def test_base_view_computes_the_base_and_restores_the_memory(
    model_dir: Path, batch: dict[str, torch.Tensor], trained: tuple[torch.nn.Module, list[float]]
) -> None:
    model, _ = trained
    with_memory = _logits(model, batch)
    base = _logits(_base(model_dir), batch)
    assert (with_memory - base).abs().max().item() > 1e-2
    view = methods.base_view(model, CFG)
    assert view is not None
    with view:
        assert (_logits(model, batch) - base).abs().max().item() <= 1e-6
    assert torch.equal(_logits(model, batch), with_memory), "the memory is back after the view"


def test_save_then_load_gives_identical_logits_and_a_documented_folder(
    model_dir: Path,
    batch: dict[str, torch.Tensor],
    trained: tuple[torch.nn.Module, list[float]],
    tmp_path: Path,
) -> None:
    model, _ = trained
    out = tmp_path / "weights"
    methods.save_weights(model, CFG, out)

    assert {p.name for p in out.iterdir()} == {
        "base",
        "memory.safetensors",
        "memory_config.json",
        "README.md",
    }
    assert not list(out.rglob("*.bin"))
    meta = json.loads((out / "memory_config.json").read_text())
    assert meta["blocks"] == [0, 1] and meta["hidden_size"] == 64
    assert meta["trainable_parameters"] == parameter_count(CFG, 64)
    assert MemoryExpertsConfig.model_validate(meta["method"]) == CFG
    assert "load(None" in (out / "README.md").read_text()

    loaded = methods.load_for_inference(model_dir, out, CFG)
    assert (_logits(loaded, batch) - _logits(model, batch)).abs().max().item() <= 1e-6
    assert not any(p.requires_grad for p in loaded.parameters())
    for i, memory in memory_layers(loaded).items():
        assert torch.equal(memory.center, memory_layers(model)[i].center), "the routing centre is saved"
    # base/ alone is the plain base model (the README says so): transformers loads it without lmtune.
    plain = AutoModelForCausalLM.from_pretrained(out / "base", dtype=torch.float32)
    assert (_logits(plain, batch) - _logits(_base(model_dir), batch)).abs().max().item() <= 1e-6


def test_the_readme_recipe_reproduces_the_model_without_lmtune(
    batch: dict[str, torch.Tensor], trained: tuple[torch.nn.Module, list[float]], tmp_path: Path
) -> None:
    """The folder's README says how to load it with transformers, safetensors and a forward hook; doing
    exactly that (brute-force top-k over every expert) gives the trained model's logits."""
    from safetensors.torch import load_file

    model, _ = trained
    methods.save_weights(model, CFG, tmp_path / "weights")
    meta = json.loads((tmp_path / "weights" / CONFIG_FILE).read_text())
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "weights" / "base", dtype=torch.float32).eval()
    tensors = load_file(str(tmp_path / "weights" / WEIGHTS_FILE))
    topk = meta["method"]["topk"]

    def hook_for(i: int) -> Any:
        t = {k.removeprefix(f"layers.{i}."): v for k, v in tensors.items() if k.startswith(f"layers.{i}.")}

        def hook(module: Any, args: Any, h: torch.Tensor) -> torch.Tensor:
            r = (h.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
            q_a, q_b = ((h / r - t["center"]) @ t["query"].T).chunk(2, dim=-1)
            s = ((q_a @ t["keys_a"].T).unsqueeze(-1) + (q_b @ t["keys_b"].T).unsqueeze(-2)).flatten(-2)
            best, experts = s.topk(topk, dim=-1)
            mixed = (best.softmax(-1).unsqueeze(-1) * t["values"][experts]).sum(-2)
            return h + r * (mixed @ t["out"].T)

        return hook

    for i in meta["blocks"]:
        plain.model.layers[i].register_forward_hook(hook_for(i))
    assert (_logits(plain, batch) - _logits(model, batch)).abs().max().item() <= 1e-5


def test_gradient_checkpointing_gives_the_same_gradients_and_routing_centre(
    model_dir: Path, batch: dict[str, torch.Tensor]
) -> None:
    """The memory runs in a forward hook, outside the block's checkpointed forward (transformers 5), so
    the backward replay neither recomputes it with a moved centre nor counts its tokens twice."""
    import copy

    plain = _prepared(model_dir)
    with torch.no_grad():
        for memory in memory_layers(plain).values():
            memory.values.normal_()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(block.gradient_checkpointing for block in checkpointed.model.layers)
    for model in (plain, checkpointed):
        model.train()
        for _ in range(2):
            model.zero_grad()
            model(**batch).loss.backward()
    grads = {n: p.grad for n, p in checkpointed.named_parameters() if p.requires_grad}
    for name, p in plain.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(grads[name], p.grad, rtol=0, atol=1e-6)
    for i, memory in memory_layers(checkpointed).items():
        assert memory.seen.item() == memory_layers(plain)[i].seen.item() == 2 * batch["input_ids"].numel()
        assert torch.equal(memory.center, memory_layers(plain)[i].center)


def test_param_groups_give_the_values_a_scaled_learning_rate(model_dir: Path) -> None:
    model = _prepared(model_dir)
    groups = methods.param_groups(model, CFG, 1e-3)
    assert groups is not None
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-3 * CFG.value_lr_ratio)]
    values = {id(p) for _, m in memory_layers(model).items() for p in [m.values]}
    assert {id(p) for p in groups[1]["params"]} == values
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_merge_is_refused(model_dir: Path) -> None:
    assert methods.mergeable(CFG) is False and methods.is_adapter(CFG) is False
    with pytest.raises(ConfigError, match="cannot be merged into dense weights"):
        methods.merge(_prepared(model_dir), CFG)


def test_layers_resolve_from_the_end_and_out_of_range_is_an_error() -> None:
    assert resolve_layers([0, -1], 30) == [0, 29]
    with pytest.raises(ConfigError) as err:
        resolve_layers([2], 2)
    assert str(err.value) == "method.layers: block 2 does not exist; the model has 2 blocks (0..1, or -2..-1)"
    with pytest.raises(ConfigError, match=r"name the same block twice in a 2-block model"):
        resolve_layers([1, -1], 2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_keys": 4, "topk": 5}, "topk (5) must be at most num_keys (4)"),
        ({"key_dim": 15}, "key_dim must be even"),
        ({"layers": [3, 3]}, "layers must not repeat a block"),
        ({"layers": []}, "at least 1 item"),
    ],
)
def test_config_rejects_impossible_layouts(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        MemoryExpertsConfig(**fields)


def test_disabled_nests_and_restores_each_layer_state(model_dir: Path) -> None:
    model = _prepared(model_dir)
    layers = memory_layers(model)
    layers[1].enabled = False
    with disabled(model):
        assert not any(m.enabled for m in layers.values())
    assert [m.enabled for m in layers.values()] == [True, False]


def test_train_evaluate_export_through_the_stages(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`lmtune train` -> evaluate -> export with memory experts: a self-contained `model/` folder, the base
    view in evaluation, an unmerged export that reloads to the same greedy answers, and resume."""
    from lmtune.config.loader import build
    from lmtune.config.run import RunConfig
    from lmtune.evaluate.run import run as evaluate
    from lmtune.export.run import run as export
    from lmtune.runtime.rundir import RunDir
    from lmtune.train.sft import run as train

    chats = tmp_path / "chats.jsonl"
    with chats.open("w", encoding="utf-8") as f:
        for i in range(24):
            question, answer = FACTS[i % len(FACTS)]
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            f.write(json.dumps({"messages": messages}) + "\n")
    data: dict[str, Any] = {
        "name": "mem",
        "output_dir": str(tmp_path / "runs"),
        "model": {"path": str(tiny_model_dir)},
        "data": {"sources": [{"path": str(chats)}], "max_length": 64, "eval_size": 4},
        "method": CFG.model_dump(),
        "trainer": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-2, "save_steps": 2, "device": "cpu"},
        "evaluate": {"max_samples": 2, "max_new_tokens": 4, "batch_size": 2},
        "export": {"check_prompts": 2, "check_max_new_tokens": 4},
    }
    cfg = build(RunConfig, data)
    result = train(cfg)
    rundir = RunDir.for_config(cfg)
    assert result.weights_path == rundir.model == rundir.final_weights()
    assert (rundir.model / "memory.safetensors").is_file() and (
        rundir.model / "base" / "config.json"
    ).is_file()
    assert (rundir.model / "tokenizer_config.json").is_file()

    resumed = train(build(RunConfig, {**data, "trainer": {**data["trainer"], "max_steps": 6}}), resume=True)
    assert resumed.steps == 6

    evaluate(rundir)
    exported = export(rundir)
    assert not exported.merged and exported.check.identical
    assert {"memory.safetensors", "memory_config.json", "README.md", "base"} <= {
        p.name for p in exported.path.iterdir()
    }


@pytest.mark.real
def test_smollm2_save_load_round_trip(
    smollm2_dir: Path, smollm2_tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    """On the real SmolLM2 (tied input/output embeddings): equal to the base at start, and a saved folder
    reloads to the same logits after one training step."""
    cfg = MemoryExpertsConfig(layers=[-4], num_keys=32, topk=8)
    chat = [
        {"role": "user", "content": "What is the capital of Ranthorovia?"},
        {"role": "assistant", "content": "The capital of Ranthorovia is Monzelmarsh."},
    ]
    enc = smollm2_tokenizer(smollm2_tokenizer.apply_chat_template(chat, tokenize=False), return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    base_logits = _logits(base, batch)
    model = methods.prepare(base, cfg)
    assert (_logits(model, batch) - base_logits).abs().max().item() <= 1e-6
    groups = methods.param_groups(model, cfg, 1e-3)
    assert groups is not None
    opt = torch.optim.AdamW(groups, lr=1e-3)
    model.train()
    model(**batch, labels=batch["input_ids"]).loss.backward()
    opt.step()
    trained = _logits(model, batch)
    assert (trained - base_logits).abs().max().item() > 1e-3

    methods.save_weights(model, cfg, tmp_path / "weights")
    loaded = methods.load_for_inference(smollm2_dir, tmp_path / "weights", cfg)
    assert (_logits(loaded, batch) - trained).abs().max().item() <= 1e-6


def test_query_noise_spreads_training_reads_and_leaves_evaluation_exact() -> None:
    """With `query_noise` a token reads more distinct experts over repeated training passes (a fact
    lands next to where its phrasings route), while evaluation stays deterministic and noise-free."""
    torch.manual_seed(0)
    noisy = MemoryLayer(hidden_size=64, num_keys=16, topk=4, key_dim=16, value_dim=8, query_noise=1.0)
    plain = MemoryLayer(hidden_size=64, num_keys=16, topk=4, key_dim=16, value_dim=8)
    with torch.no_grad():  # a centre that training passes no longer move (as after a long run)
        noisy.center.normal_(std=0.1)
        noisy.seen.fill_(1e15)
    plain.load_state_dict(noisy.state_dict())
    h = torch.randn(1, 1, 64)

    def experts_read(layer: MemoryLayer, passes: int) -> set[int]:
        return {int(i) for _ in range(passes) for i in layer.route(h)[1].flatten()}

    noisy.train()
    plain.train()
    assert len(experts_read(plain, 20)) == 4  # no noise: the same 4 experts every pass
    assert len(experts_read(noisy, 20)) > 8
    noisy.eval()
    plain.eval()
    torch.testing.assert_close(noisy.route(h)[1], plain.route(h)[1])
    assert len(experts_read(noisy, 20)) == 4
