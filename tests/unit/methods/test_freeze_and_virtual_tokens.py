"""Freeze tuning's module selection; prompt tuning's initialisation and its scoring on the real positions;
prefix tuning's reparameterisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from lmtune import methods
from lmtune.config.methods.freeze import FreezeConfig
from lmtune.config.methods.prefix_tuning import PrefixTuningConfig
from lmtune.config.methods.prompt_tuning import PromptTuningConfig
from lmtune.errors import ConfigError
from lmtune.evaluate.loss import eval_loss
from lmtune.methods.freeze import matches

IDS = torch.tensor([[1, 5, 9, 40, 77, 120, 3, 8]])


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("model.layers.1.mlp.up_proj.weight", ["model.layers.1"], True),
        ("model.layers.10.mlp.up_proj.weight", ["model.layers.1"], False),
        ("model.layers.1.mlp.up_proj.weight", ["model.layers.*.mlp"], True),
        ("model.layers.1.self_attn.q_proj.weight", ["model.layers.*.mlp"], False),
        ("lm_head.weight", ["lm_head"], True),
        ("lm_head.weight", ["lm_head.weight"], True),
        ("model.embed_tokens.weight", ["lm_head", "model.layers.0"], False),
    ],
)
def test_freeze_matches_whole_module_names(name: str, patterns: list[str], expected: bool) -> None:
    assert matches(name, patterns) is expected


def test_freeze_trains_only_the_chosen_modules_and_saves_a_whole_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = FreezeConfig(trainable=["model.layers.*.mlp", "lm_head"])
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        *(f"model.layers.{i}.mlp.{m}.weight" for i in (0, 1) for m in ("gate_proj", "up_proj", "down_proj")),
        "lm_head.weight",
    }
    methods.save_weights(model, cfg, tmp_path / "m")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "m").iterdir()}
    assert not methods.is_adapter(cfg) and methods.mergeable(cfg)


def test_freeze_refuses_a_pattern_that_matches_nothing(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        methods.prepare(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), FreezeConfig(trainable=["model.layer.1"])
        )
    assert str(err.value) == (
        "method.trainable: 'model.layer.1' matches no parameter of LlamaForCausalLM (its modules are named "
        "like lm_head, model.embed_tokens, model.layers.0.input_layernorm, model.layers.1.self_attn.q_proj, "
        "model.layers.1.self_attn.v_proj, model.norm)"
    )


def _embedding_rows(model: Any) -> torch.Tensor:
    return model.prompt_encoder["default"].embedding.weight.detach()


def test_prompt_tuning_starts_from_the_init_text(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "answer the question"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    model = methods.prepare(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        PromptTuningConfig(num_virtual_tokens=7, init_text=text),
    )
    words = model.get_input_embeddings().weight.detach()
    expected = words[torch.tensor((ids * 7)[:7])]
    assert torch.equal(_embedding_rows(model), expected)


def test_prompt_tuning_default_init_samples_vocabulary_embeddings(tiny_model_dir: Path) -> None:
    set_seed(0)
    model = methods.prepare(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), PromptTuningConfig(num_virtual_tokens=5)
    )
    words = model.get_input_embeddings().weight.detach()
    for row in _embedding_rows(model):
        assert (words == row).all(dim=1).any(), "each virtual token starts as a real token's embedding"


def test_eval_loss_scores_the_real_positions_of_a_prompt_tuned_model(tiny_model_dir: Path) -> None:
    """With virtual tokens prepended, evaluation's loss is the loss PEFT itself computes."""
    model = methods.prepare(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), PromptTuningConfig(num_virtual_tokens=5)
    )
    labels = [-100, -100, -100, 40, 77, 120, 3, 8]
    row = {"input_ids": IDS[0].tolist(), "labels": labels, "attention_mask": [1] * 8}
    ours = eval_loss(model.eval(), [row], batch_size=1, pad_id=2).loss
    with torch.no_grad():
        peft = model(input_ids=IDS, labels=torch.tensor([labels])).loss.item()
    assert ours == pytest.approx(peft, rel=1e-5)


def test_prefix_projection_trains_an_mlp_and_saves_the_projected_prefixes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = PrefixTuningConfig(num_virtual_tokens=4, projection=True)
    set_seed(0)
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".transform." in n for n in trainable) and all(methods.trains(n, cfg) for n in trainable)
    with torch.no_grad():
        expected = model.eval()(input_ids=IDS).logits
    methods.save_weights(model, cfg, tmp_path / "p")
    loaded = methods.load_for_inference(tiny_model_dir, tmp_path / "p", cfg)
    with torch.no_grad():
        assert (loaded(input_ids=IDS).logits - expected).abs().max().item() < 1e-5
    assert not any(".transform." in n for n, _ in loaded.named_parameters()), (
        "inference keeps only the prefixes"
    )
