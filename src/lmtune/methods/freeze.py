"""Freeze tuning: train only chosen layers or modules (e.g. the last decoder layers and the output head),
every other weight frozen. Saves, loads and exports the whole model, like full fine-tuning."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from lmtune.config.methods.freeze import FreezeConfig
from lmtune.errors import ConfigError
from lmtune.methods.full import base_view, callbacks, load, merge, param_groups, save

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "FreezeConfig",
    "base_view",
    "callbacks",
    "load",
    "matches",
    "merge",
    "param_groups",
    "prepare",
    "save",
    "trains",
]


def matches(name: str, patterns: list[str]) -> bool:
    """Whether parameter `name` lies in a module named by one of `patterns` (the module itself, or any
    module below it: `model.layers.1` matches `model.layers.1.mlp.up_proj.weight`, not `model.layers.10`)."""
    return any(fnmatchcase(name, p) or fnmatchcase(name, f"{p}.*") for p in patterns)


def prepare(model: PreTrainedModel, cfg: FreezeConfig) -> PreTrainedModel:
    """Freeze every parameter, then unfreeze those under `cfg.trainable`.

    Raises:
        ConfigError: an entry of `trainable` matches no parameter of the model.
    """
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    for pattern in cfg.trainable:
        if not any(matches(n, [pattern]) for n in names):
            modules = sorted({n.rsplit(".", 1)[0] for n in names})
            sample = ", ".join(modules[:3] + modules[-3:])
            raise ConfigError(
                f"method.trainable: '{pattern}' matches no parameter of {type(model).__name__} "
                f"(its modules are named like {sample})"
            )
    for name, param in model.named_parameters(remove_duplicate=False):
        param.requires_grad_(matches(name, cfg.trainable))
    return model


def trains(name: str, cfg: FreezeConfig) -> bool:
    """Whether parameter `name` is meant to train under `cfg`: it lies under a `trainable` module."""
    return matches(name, cfg.trainable)
