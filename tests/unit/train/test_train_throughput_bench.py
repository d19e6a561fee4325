"""benchmarks/train_throughput.py on CPU with the tiny shape: the three variants run the same batches,
lmtune's variant goes through `lmtune train`'s own path (`lmtune.train.sft.run`: prepared data in the run
directory, the product's collator, callbacks and NaN guard, the final save) and matches plain HF + PEFT
step for step, and the report adds up. (The GPU numbers come from `make bench-gpu`; this only keeps the
script working.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_module("train_throughput")


@pytest.mark.parametrize("regime", ["tiny-lora", "tiny-qlora", "tiny-full"])
def test_variants_train_the_same_batches_to_the_same_losses(
    bench: ModuleType, regime: str, tmp_path: Path
) -> None:
    records = [
        bench.run_one(regime, variant, 1, 3, "cpu", **({"workdir": tmp_path} if variant == "lmtune" else {}))
        for variant in bench.VARIANTS
    ]
    assert [r["status"] for r in records] == ["ok"] * 3
    hf, _, lmtune = records
    assert len(hf["losses"]) == len(lmtune["losses"]) == 4
    assert hf["trainable_params"] == lmtune["trainable_params"]
    assert lmtune["batches_as_planned"]  # the Trainer's shuffle fed the peers' batches in their order
    assert lmtune["losses"] == pytest.approx(hf["losses"], rel=1e-4)  # float32 on CPU: same updates
    assert bench.loss_parity(records, regime) < 1e-4
    assert all(r["tokens_per_s"] > 0 and r["first_step_s"] > 0 for r in records)
    lines = bench.summary(records)
    assert len(lines) == 3 and "vs hf" in lines[2] and "vs peer" in lines[2]

    # lmtune's variant ran `lmtune train`'s path: its collator, its callbacks, its run directory.
    assert lmtune["steps_done"] == 4 and lmtune["collator"] == "PadCollator"
    assert "NonFiniteGuard" in lmtune["forward_hooks"]
    assert lmtune["logged_steps"] == [1, 2, 3, 4]  # MetricsCallback wrote a train record per step
    run_dir = Path(lmtune["run_dir"])
    assert (run_dir / "metrics.jsonl").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / ("model" if regime == "tiny-full" else "adapter")).is_dir()  # the final save
    assert lmtune["estimate_GiB"] > 0


def test_a_shuffle_other_than_planned_gives_no_loss_parity(bench: ModuleType) -> None:
    hf = {"regime": "r", "variant": "hf", "status": "ok", "losses": [1.0, 2.0]}
    lmtune = {"regime": "r", "variant": "lmtune", "status": "ok", "losses": [1.0, 2.0]}
    assert bench.loss_parity([hf, lmtune | {"batches_as_planned": True}], "r") == 0.0
    assert bench.loss_parity([hf, lmtune | {"batches_as_planned": False}], "r") is None


def test_lora_flops_and_the_full_run_report(bench: ModuleType, tmp_path: Path) -> None:
    regime = bench.REGIMES["1b-lora"]
    full = bench.Regime("1b", "full", 4, False)
    # LoRA skips the frozen weights' gradients: 4N + attention + 6 x adapter params vs 6N + attention.
    assert bench.flops_per_token(regime) < bench.flops_per_token(full)
    out = tmp_path / "results.json"
    argv = ["--regimes", "tiny-lora", "--device", "cpu", "--warmup", "1", "--steps", "2", "--out", str(out)]
    bench.subprocess.run([sys.executable, bench.__file__, *argv], check=True, capture_output=True)
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 1 and [r["variant"] for r in runs[0]["records"]] == list(bench.VARIANTS)
    assert runs[0]["loss_parity"]["tiny-lora"] < 1e-4
