"""The contract every method must pass, parametrised over `lmtune.methods.ALL_METHODS`.

A new method joins the union and `ALL_METHODS` and is covered here without a line of new test code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase, set_seed

from lmtune import methods
from lmtune.methods import ALL_METHODS

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


def _ids(method: Any) -> str:
    return str(method.type)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny architecture and tokenizer, initialised at the weight scale of a trained model.

    With the tiny model's default init (std 0.02) the frozen output head spans logits of about +-1, so a
    method that leaves the head frozen (LoRA) cannot express an overfit whatever it learns; a trained
    model's head is far larger. std 0.2 gives the head that range.
    """
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out = tmp_path_factory.mktemp("contract") / "model"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def batch(tiny_tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """Two chats, right-padded; every real token is trained on, padding is not."""
    texts = [tiny_tokenizer.apply_chat_template(c, tokenize=False) for c in CHATS]
    enc = tiny_tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def _prepared(model_dir: Path, method: Any) -> torch.nn.Module:
    set_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return methods.prepare(base, method)


def _train(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int, lr: float) -> list[float]:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
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
    model.eval()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("method", ALL_METHODS, ids=_ids)
def test_only_intended_parameters_train_and_change(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any
) -> None:
    model = _prepared(model_dir, method)
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    intended = {n for n in named if methods.trains(n, method)}
    assert trainable == intended
    assert trainable, "a method must train something"
    if method.type == "lora":
        assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
        assert any(".lora_A." in n for n in trainable) and any(".lora_B." in n for n in trainable)
        assert len(trainable) < len(named)
    if method.type == "full":
        assert trainable == set(named)

    before = {n: p.detach().clone() for n, p in named.items()}
    # Two steps: with LoRA's zero-initialised B, A only receives a gradient from the second step on.
    _train(model, batch, steps=2, lr=1e-2)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == trainable


@pytest.mark.parametrize("method", ALL_METHODS, ids=_ids)
def test_save_then_load_gives_identical_logits(
    model_dir: Path, batch: dict[str, torch.Tensor], method: Any, tmp_path: Path
) -> None:
    model = _prepared(model_dir, method)
    _train(model, batch, steps=3, lr=1e-2)
    expected = _logits(model, batch)
    methods.save_weights(model, method, tmp_path / "weights")
    assert list((tmp_path / "weights").glob("*.safetensors")), "weights are saved as safetensors"
    assert not list((tmp_path / "weights").glob("*.bin"))

    loaded = methods.load_for_inference(model_dir, tmp_path / "weights", method)
    got = _logits(loaded, batch)
    assert (got - expected).abs().max().item() <= 1e-6
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert (_logits(base, batch) - expected).abs().max().item() > 1e-3, "training changed the function"


@pytest.mark.parametrize("method", ALL_METHODS, ids=_ids)
def test_merged_matches_unmerged(model_dir: Path, batch: dict[str, torch.Tensor], method: Any) -> None:
    if not methods.mergeable(method):
        pytest.skip(f"method {method.type} declares itself not mergeable")
    model = _prepared(model_dir, method)
    _train(model, batch, steps=3, lr=1e-2)
    unmerged = _logits(model, batch)
    merged = methods.merge(model, method)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert type(merged).__module__.startswith("transformers."), "merged model is a plain transformers model"
    assert (_logits(merged, batch) - unmerged).abs().max().item() <= 1e-4
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert (_logits(base, batch) - unmerged).abs().max().item() > 1e-3, "the merge folded in a real update"


@pytest.mark.parametrize("method", ALL_METHODS, ids=_ids)
def test_one_batch_can_be_overfitted(model_dir: Path, batch: dict[str, torch.Tensor], method: Any) -> None:
    model = _prepared(model_dir, method)
    losses = _train(model, batch, steps=60, lr=1e-2)
    assert min(losses) < 0.2 * losses[0], f"loss {losses[0]:.3f} -> {min(losses):.3f}"
