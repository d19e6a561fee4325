"""The CUDA fast path against the plain path on the same batches: Liger kernels (and `torch.compile`)
must not change what is learned. Skipped without CUDA; run with `pytest -m gpu` on a GPU machine with
the `gpu` extra installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lmtune.config.loader import build
from lmtune.schema import RunConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

STEPS = 20


def _losses(tiny_model_dir: Path, root: Path, name: str, **trainer: Any) -> list[float]:
    from lmtune.train.sft import run

    chats = root / "chats.jsonl"
    if not chats.exists():
        lines = []
        for a in range(40):
            chat = [
                {"role": "user", "content": f"she has {a} apples and buys {a % 7} more. how many?"},
                {"role": "assistant", "content": f"she has {a + a % 7} apples. #### {a + a % 7}"},
            ]
            lines.append(json.dumps({"messages": chat}) + "\n")
        chats.write_text("".join(lines))
    cfg = build(
        RunConfig,
        {
            "name": name,
            "output_dir": str(root / "runs"),
            "model": {"path": str(tiny_model_dir)},
            "data": {"sources": [{"path": str(chats)}], "max_length": 64, "eval_size": 4},
            "method": {"type": "lora", "rank": 8, "alpha": 16, "dropout": 0.0},
            "trainer": {
                "max_steps": STEPS,
                "batch_size": 4,
                "learning_rate": 5e-3,
                "logging_steps": 1,
                "save_steps": 1000,
                "device": "cuda",
            }
            | trainer,
        },
    )
    run(cfg)
    records = [json.loads(x) for x in (root / "runs" / name / "metrics.jsonl").read_text().splitlines() if x]
    return [r["loss"] for r in records if r.get("kind") == "train"]


def test_liger_losses_match_the_plain_path_within_one_percent(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("liger_kernel", reason="the gpu extra (liger-kernel) is not installed")
    plain = _losses(tiny_model_dir, tmp_path, "plain", liger=False)
    fused = _losses(tiny_model_dir, tmp_path, "liger", liger=True)
    assert len(plain) == len(fused) == STEPS
    for step, (a, b) in enumerate(zip(plain, fused, strict=True), start=1):
        assert b == pytest.approx(a, rel=0.01), step
    assert plain[-1] < plain[0]


def test_compiled_losses_match_the_plain_path_within_one_percent(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    plain = _losses(tiny_model_dir, tmp_path, "plain", liger=False)
    compiled = _losses(tiny_model_dir, tmp_path, "compiled", liger=False, compile=True)
    for step, (a, b) in enumerate(zip(plain, compiled, strict=True), start=1):
        assert b == pytest.approx(a, rel=0.01), step
