"""The contract every method must pass, parametrised over `lmtune.methods.ALL_METHODS` (on a float base)
and over the quantized bases the adapter methods support (QLoRA and friends, `QUANTIZED`).

A new method joins the union and `ALL_METHODS` and is covered here without a line of new test code.
Where a method legitimately differs, the difference is a row in a table here, with its reason:
`OVERFIT` (methods that learn more slowly get more steps or a higher learning rate, never a looser
target) and `SAVE_LOAD_TOLERANCE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import PreTrainedTokenizerBase, set_seed

from lmtune import methods
from lmtune.config.combinations import quantized_base_refusal
from lmtune.config.methods import ALL_METHODS, AnyMethod
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.model import ModelConfig, Quantization
from lmtune.methods.ia3 import Ia3Config
from lmtune.runtime.load import load_model
from lmtune.runtime.quantize import MERGE_REFUSAL, quantization_of

CHATS = [
    [
        {"role": "user", "content": "how many apples does she have?"},
        {"role": "assistant", "content": "she has three apples and two books. #### 42"},
    ],
    [
        {"role": "user", "content": "what is the capital city of france?"},
        {"role": "assistant", "content": "paris is the capital of france."},
    ],
]

QUANTIZED: list[tuple[AnyMethod, Quantization]] = [
    (LoraConfig(rank=4, alpha=8), "nf4"),
    (LoraConfig(rank=4, alpha=8, use_dora=True), "fp4"),
    (LoraConfig(rank=4, alpha=8), "int8"),
    (next(m for m in ALL_METHODS if isinstance(m, Ia3Config)), "nf4"),
]
"""Adapter methods on a bitsandbytes-quantized base (all run on CPU)."""

OVERFIT: dict[str, tuple[int, float]] = {
    "ia3": (150, 1e-1),  # one scaling vector per layer, starting at 1: small steps barely move it
    "vera": (100, 5e-2),  # two vectors per layer on frozen random projections
    "prompt_tuning": (150, 1e-1),  # the virtual-token embeddings are all it can change
    "prefix_tuning": (120, 1e-1),
}
"""(steps, learning rate) for methods that learn more slowly than the default (60 steps at 1e-2); the
target, loss below 20% of its start, is the same for every method."""

SAVE_LOAD_TOLERANCE: dict[str, float] = {
    # PiSSA / OLoRA are saved as the plain LoRA [B, -B0][A; A0] on the original weights, which the
    # in-memory model holds as W_res = W - s B0 A0: equal in exact arithmetic, float32 rounding apart.
    "pissa": 5e-5,
    "olora": 5e-5,
}
"""Largest logit difference after save -> load where it cannot be bit-exact (default 1e-6)."""

ADAPTER_MARKERS = ("lora_", "ia3_", "vera_", "hada_", "lokr_", "prompt_encoder")


def _id(method: Any, quantization: Quantization = "none") -> str:
    shown = method.model_dump(exclude_defaults=True, exclude={"type", "rank", "alpha"})
    label = "-".join([str(method.type), *(f"{k}={v}" for k, v in shown.items() if not isinstance(v, list))])
    return label if quantization == "none" else f"{label}@{quantization}"


CASES = [pytest.param(m, "none", id=_id(m)) for m in ALL_METHODS] + [
    pytest.param(m, q, id=_id(m, q)) for m, q in QUANTIZED
]


def test_quantized_cases_are_valid_combinations() -> None:
    assert all(quantized_base_refusal(m, q) is None for m, q in QUANTIZED)


@pytest.fixture(scope="module")
def model_dir(tiny_trained_scale_dir: Path) -> Path:
    """The tiny model at a trained model's weight scale (tests/conftest.py)."""
    return tiny_trained_scale_dir


@pytest.fixture(scope="module")
def batch(tiny_tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """Two chats, right-padded; every real token is trained on, padding is not."""
    texts = [tiny_tokenizer.apply_chat_template(c, tokenize=False) for c in CHATS]
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _base(model_dir: Path, quantization: Quantization) -> torch.nn.Module:
    return load_model(ModelConfig(path=str(model_dir), quantization=quantization))


def _prepared(model_dir: Path, method: Any, quantization: Quantization) -> torch.nn.Module:
    set_seed(0)
    return methods.prepare(_base(model_dir, quantization), method)


def _train(
    model: torch.nn.Module, method: Any, batch: dict[str, torch.Tensor], steps: int, lr: float
) -> list[float]:
    """`steps` AdamW steps on `batch`, with the method's own parameter groups when it has them."""
    model.train()
    groups = methods.param_groups(model, method, lr) or [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at the real input positions (prompt tuning prepends virtual tokens: their logits come first)."""
    model.eval()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return logits[:, -batch["input_ids"].shape[1] :]


@pytest.mark.parametrize(("method", "quantization"), CASES)
def test_only_intended_parameters_train_and_change(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any, quantization: Quantization
) -> None:
    model = _prepared(model_dir, method, quantization)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    intended = {n for n in named if methods.trains(n, method)}
    assert trainable == intended
    assert trainable, "a method must train something"
    if method.type == "lora" and not method.use_dora:
        assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    if method.type == "lora":
        assert any(".lora_A." in n for n in trainable) and any(".lora_B." in n for n in trainable)
        assert any(".lora_magnitude_vector." in n for n in trainable) == method.use_dora
        assert len(trainable) < len(named)
    if method.type == "full":
        assert trainable == set(named)
    if method.type == "freeze":
        assert trainable == {n for n in named if n.startswith(("model.layers.1.", "lm_head."))}
    if quantization != "none":
        assert quantization_of(model) == quantization

    before = {n: p.detach().clone() for n, p in named.items()}
    # Two steps: with LoRA's zero-initialised B, A only receives a gradient from the second step on.
    _train(model, method, batch, steps=2, lr=1e-2)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == trainable


@pytest.mark.parametrize(("method", "quantization"), CASES)
def test_save_then_load_gives_identical_logits(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any, quantization: Quantization, tmp_path: Path
) -> None:
    model = _prepared(model_dir, method, quantization)
    _train(model, method, batch, steps=3, lr=1e-2)
    expected = _logits(model, batch)
    methods.save_weights(model, method, tmp_path / "weights")
    assert list((tmp_path / "weights").glob("*.safetensors")), "weights are saved as safetensors"
    assert not list((tmp_path / "weights").glob("*.bin"))

    loaded = methods.load_for_inference(model_dir, tmp_path / "weights", method)
    assert quantization_of(loaded) == quantization, "an adapter loads on the base it was trained on"
    got = _logits(loaded, batch)
    tolerance = SAVE_LOAD_TOLERANCE.get(str(getattr(method, "init", "")), 1e-6)
    assert (got - expected).abs().max().item() <= tolerance
    base = _base(model_dir, quantization)
    assert (_logits(base, batch) - expected).abs().max().item() > 1e-3, "training changed the function"


@pytest.mark.parametrize(("method", "quantization"), CASES)
def test_merged_matches_unmerged(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any, quantization: Quantization
) -> None:
    if not methods.mergeable(method):
        pytest.skip(f"method {method.type} declares itself not mergeable")
    if MERGE_REFUSAL[quantization] is not None:
        pytest.skip(f"a {quantization} base is not mergeable (tests/unit/methods: the merge is refused)")
    model = _prepared(model_dir, method, quantization)
    _train(model, method, batch, steps=3, lr=1e-2)
    unmerged = _logits(model, batch)
    merged = methods.merge(model, method)
    assert not any(marker in n for n, _ in merged.named_parameters() for marker in ADAPTER_MARKERS)
    assert type(merged).__module__.startswith("transformers."), "merged model is a plain transformers model"
    assert quantization_of(merged) == "none" and not hasattr(merged.config, "quantization_config")
    assert (_logits(merged, batch) - unmerged).abs().max().item() <= 1e-4
    base = _base(model_dir, quantization)
    assert (_logits(base, batch) - unmerged).abs().max().item() > 1e-3, "the merge folded in a real update"


@pytest.mark.parametrize(("method", "quantization"), CASES)
def test_one_batch_can_be_overfitted(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any, quantization: Quantization
) -> None:
    steps, lr = OVERFIT.get(method.type, (60, 1e-2))
    model = _prepared(model_dir, method, quantization)
    losses = _train(model, method, batch, steps=steps, lr=lr)
    assert min(losses) < 0.2 * losses[0], f"loss {losses[0]:.3f} -> {min(losses):.3f}"
