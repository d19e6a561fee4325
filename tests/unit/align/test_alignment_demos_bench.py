"""benchmarks/alignment_demos.py reads a finished alignment run through the typed run records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from lmtune.runtime.rundir import RunDir


def test_finished_metrics_reads_the_typed_records(
    tmp_path: Path, benchmark_module: Callable[[str], ModuleType]
) -> None:
    demos = benchmark_module("alignment_demos")
    aligned = RunDir(tmp_path / "align")
    assert demos.finished_metrics(aligned) is None  # nothing trained yet
    (aligned.root / "adapter").mkdir(parents=True)
    (aligned.root / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    aligned.append_metrics({"kind": "align_eval_before", "step": 0, "eval_reward": -0.5})
    aligned.append_metrics({"kind": "train", "step": 1, "epoch": 0.5, "loss": 0.7})
    aligned.append_metrics({"kind": "train_summary", "step": 2, "train_runtime": 12.5})
    aligned.append_metrics({"kind": "align_eval", "step": 2, "eval_reward": 0.25, "epoch": 1.0})
    assert demos.finished_metrics(aligned) == {
        "eval_reward": 0.25,
        "eval_reward_before": -0.5,
        "steps": 2,
        "train_seconds": 12.5,
    }
