"""Every fine-tuning method's config (one module each) joined in one discriminated union. Pure pydantic:
no implementation is imported here; `lmtune.methods` dispatches each config to its implementation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from lmtune.config.methods.freeze import FreezeConfig
from lmtune.config.methods.full import FullConfig
from lmtune.config.methods.hft import HftConfig
from lmtune.config.methods.ia3 import Ia3Config
from lmtune.config.methods.loha import LohaConfig
from lmtune.config.methods.lokr import LokrConfig
from lmtune.config.methods.lora import LoraConfig
from lmtune.config.methods.lora_experts import LoraExpertsConfig
from lmtune.config.methods.memory_experts import MemoryExpertsConfig
from lmtune.config.methods.prefix_tuning import PrefixTuningConfig
from lmtune.config.methods.prompt_tuning import PromptTuningConfig
from lmtune.config.methods.upcycle import UpcycleConfig
from lmtune.config.methods.vera import VeraConfig

AnyMethod = (
    FullConfig
    | LoraConfig
    | MemoryExpertsConfig
    | FreezeConfig
    | Ia3Config
    | PromptTuningConfig
    | PrefixTuningConfig
    | VeraConfig
    | LohaConfig
    | LokrConfig
    | LoraExpertsConfig
    | UpcycleConfig
    | HftConfig
)
MethodConfig = Annotated[AnyMethod, Field(discriminator="type")]

ALL_METHODS: tuple[AnyMethod, ...] = (
    FullConfig(),
    HftConfig(round_steps=2),
    LoraConfig(rank=4, alpha=8),
    LoraConfig(rank=4, alpha=8, use_dora=True),
    LoraConfig(rank=4, alpha=8, init="pissa", use_rslora=True),
    LoraConfig(rank=4, alpha=8, init="olora"),
    LoraConfig(rank=4, alpha=8, init="gaussian", loraplus_lr_ratio=4),
    FreezeConfig(trainable=["model.layers.1", "lm_head"]),
    Ia3Config(
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        feedforward_modules=["down_proj"],
    ),
    PromptTuningConfig(num_virtual_tokens=32),
    PrefixTuningConfig(num_virtual_tokens=8),
    VeraConfig(rank=16, target_modules="all-linear"),
    LohaConfig(rank=4, alpha=8),
    LokrConfig(rank=4, alpha=8),
    MemoryExpertsConfig(layers=[0, 1], num_keys=16, topk=4, key_dim=16),
    LoraExpertsConfig(num_experts=3, rank=4, alpha=8),
    UpcycleConfig(num_experts=3, top_k=2),
)
"""One small instance of every method, for the contract suite."""
