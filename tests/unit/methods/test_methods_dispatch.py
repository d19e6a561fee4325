"""Method-level functions: which parameters train, the saved layout, loading, and union coverage."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from lmtune import methods
from lmtune.config.methods import ALL_METHODS, MethodConfig
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.lora import LoraConfig


def test_every_method_of_the_union_is_in_the_contract_suite() -> None:
    union = typing.get_args(typing.get_args(MethodConfig)[0])
    assert {type(m) for m in ALL_METHODS} == set(union)


def test_trainable_names() -> None:
    lora = LoraConfig()
    assert methods.trains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", lora)
    assert methods.trains("base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight", lora)
    assert not methods.trains("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight", lora)
    assert not methods.trains("base_model.model.lm_head.weight", lora)
    assert methods.trains("model.embed_tokens.weight", FullConfig())


def test_adapter_and_mergeable_flags() -> None:
    assert methods.is_adapter(LoraConfig()) and not methods.is_adapter(FullConfig())
    not_mergeable = {m.type for m in ALL_METHODS if not methods.mergeable(m)}
    assert {"prompt_tuning", "prefix_tuning"} <= not_mergeable
    assert not not_mergeable & {"full", "freeze", "lora", "ia3", "vera", "loha", "lokr"}


@pytest.mark.parametrize(
    ("method", "present", "absent"),
    [
        (LoraConfig(rank=2, alpha=4), {"adapter_config.json", "adapter_model.safetensors"}, {"config.json"}),
        (
            FullConfig(),
            {"config.json", "model.safetensors", "generation_config.json"},
            {"adapter_config.json"},
        ),
    ],
    ids=["lora", "full"],
)
def test_saved_layout_and_loading_for_inference(
    tiny_model_dir: Path, tmp_path: Path, method: LoraConfig | FullConfig, present: set[str], absent: set[str]
) -> None:
    model = methods.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), method)
    methods.save_weights(model, method, tmp_path / "w")
    names = {p.name for p in (tmp_path / "w").iterdir()}
    assert present <= names and not (absent & names)
    loaded = methods.load_for_inference(tiny_model_dir, tmp_path / "w", method)
    assert not loaded.training
    if methods.is_adapter(method):
        assert not any(p.requires_grad for p in loaded.parameters()), "an adapter loads frozen for inference"


def test_capabilities_are_facts_of_the_method_configs() -> None:
    """What the run config checks (quantized base, packing, merging, sharded training) is read from each
    method config's class facts, never from lists of method names."""
    from typing import get_args

    from lmtune.config.methods import AnyMethod

    facts = {
        cls.model_fields["type"].default: (
            cls.is_adapter,
            cls.mergeable,
            cls.quantizable,
            cls.virtual_tokens,
            cls.gathers_from_shards,
        )
        for cls in get_args(AnyMethod)
    }
    assert facts == {
        "full": (False, True, False, False, True),
        "hft": (False, True, False, False, False),
        "freeze": (False, True, False, False, False),
        "upcycle": (False, True, False, False, False),
        "memory_experts": (False, False, False, False, False),
        "lora": (True, True, True, False, True),
        "ia3": (True, True, True, False, True),
        "vera": (True, True, True, False, True),
        "loha": (True, True, False, False, True),
        "lokr": (True, True, False, False, True),
        "lora_experts": (True, False, False, False, True),
        "prompt_tuning": (True, False, True, True, True),
        "prefix_tuning": (True, False, True, True, True),
    }
