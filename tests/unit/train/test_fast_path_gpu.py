"""The CUDA fast path against the plain path on the same batches: Liger kernels (and `torch.compile`)
must not change what is learned, and adapters are bf16 on CUDA. Skipped without CUDA; run with
`pytest -m gpu` on a GPU machine with the `gpu` extra installed. Each training run is a fresh process:
Liger patches transformers' Llama modules for the whole process, so a "plain" run after a Liger one
(this file's or another test's) would not be plain."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import torch

from lmtune.config.run import RunConfig
from lmtune.runtime.rundir import RunDir
from lmtune.train.run_metrics import train_losses
from lmtune.train.sft import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

STEPS = 20


def _losses(run_config: Callable[..., RunConfig], name: str, **trainer: Any) -> list[float]:
    cfg = run_config(
        name=name,
        method={"type": "lora", "rank": 8, "alpha": 16, "dropout": 0.0},
        trainer={"max_steps": STEPS, "learning_rate": 5e-3, "logging_steps": 1, "save_steps": 1000}
        | {"device": "cuda"}
        | trainer,
    )
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        return fresh.submit(_train, cfg).result()


def _train(cfg: RunConfig) -> list[float]:
    result = run(cfg)
    return list(train_losses(RunDir(result.run_dir)).values())


def test_lora_adapters_are_bf16_on_cuda_by_default(run_config: Callable[..., RunConfig]) -> None:
    from lmtune import methods
    from lmtune.runtime.load import load_model

    cfg = run_config(name="dtypes", method={"type": "lora", "rank": 8}, trainer={"device": "cuda"})
    assert cfg.model.dtype == "auto"
    model = methods.prepare(load_model(cfg.model, device="cuda"), cfg.method)
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    assert trainable == {torch.bfloat16}


def test_compiled_losses_match_the_plain_path_within_one_percent(
    run_config: Callable[..., RunConfig],
) -> None:
    plain = _losses(run_config, "plain", liger=False)
    compiled = _losses(run_config, "compiled", liger=False, compile=True)
    for step, (a, b) in enumerate(zip(plain, compiled, strict=True), start=1):
        assert b == pytest.approx(a, rel=0.01), step


def test_liger_losses_match_the_plain_path_within_one_percent(run_config: Callable[..., RunConfig]) -> None:
    pytest.importorskip("liger_kernel", reason="the gpu extra (liger-kernel) is not installed")
    plain = _losses(run_config, "plain", liger=False)
    fused = _losses(run_config, "liger", liger=True)
    assert len(plain) == len(fused) == STEPS
    for step, (a, b) in enumerate(zip(plain, fused, strict=True), start=1):
        assert b == pytest.approx(a, rel=0.01), step
    assert plain[-1] < plain[0]
