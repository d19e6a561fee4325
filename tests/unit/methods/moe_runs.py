"""Shared by the MoE tests: tiny run configs on a chats file, metrics records, a trained-scale tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.runtime.rundir import RunDir

CHATS = [
    [
        {"role": "user", "content": f"she has {a} apples and buys {b} more. how many apples?"},
        {"role": "assistant", "content": f"she has {a + b} apples. #### {a + b}"},
    ]
    for a, b in [(1, 2), (3, 4), (5, 1), (2, 7), (6, 3), (8, 1), (4, 4), (9, 2)]
]


def run_config(tmp_path: Path, model_dir: Path, method: dict[str, Any], **trainer: Any) -> RunConfig:
    """A short CPU run of `model_dir` with `method` on 40 chats; `trainer` overrides the loop settings."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": CHATS[i % len(CHATS)]}) + "\n" for i in range(40)))
    return build(
        RunConfig,
        {
            "name": "moe",
            "output_dir": str(tmp_path / "runs"),
            "model": {"path": str(model_dir)},
            "data": {"sources": [{"path": str(chats)}], "max_length": 64, "eval_size": 4},
            "method": method,
            "trainer": {
                "max_steps": 12,
                "batch_size": 4,
                "learning_rate": 1e-2,
                "logging_steps": 3,
                "save_steps": 12,
                "device": "cpu",
                **trainer,
            },
        },
    )


def records(cfg: RunConfig, kind: str) -> list[dict[str, Any]]:
    """The metrics.jsonl records of `kind` written by the run of `cfg`."""
    lines = RunDir.for_config(cfg).metrics.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def save_scaled(src: Path, out: Path, initializer_range: float = 0.2) -> Path:
    """Re-initialise the architecture saved in `src` at `initializer_range` (a trained model's weight
    scale, so each block's contribution to the logits is far above float rounding) and save it with
    `src`'s tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(src)
    config.initializer_range = initializer_range
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out
