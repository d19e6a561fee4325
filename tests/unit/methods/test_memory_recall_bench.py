"""benchmarks/memory_recall.py's seed summary (`--seeds`): the per-seed pairing and the counts it
reports, and its refusals; and a smoke run on the tiny model showing that both methods train through
`lmtune.train.sft.run` on the planned batches and are measured on their saved weights. (The recall
numbers themselves come from running the benchmark.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_module("memory_recall")


def _report(seed: int | None, methods: dict[str, tuple[float, float]], **overrides: Any) -> dict[str, Any]:
    """A result file's shape: settings, and per method (held-out recall, general-loss change)."""
    report: dict[str, Any] = {
        "command": "python benchmarks/memory_recall.py --facts 200" + (f" --seed {seed}" if seed else ""),
        "model": "smollm2-135m-instruct",
        "facts": 200,
        "epochs": 20,
        "training_phrasings": 6,
        "steps": 625,
        "batch_size": 8,
        "held_out_questions": 200,
        "general_exchanges": 100,
        "replay_per_epoch": 50,
        "replay_pool": 900 + (seed or 0),
        "base_general_loss": 2.5 + (seed or 0),
        "methods": {
            name: {
                "config": {"type": name},
                "recall_held_out": recall,
                "general_loss_change": change,
                "trainable_parameters": 1000,
            }
            for name, (recall, change) in methods.items()
        },
    }
    report.update(overrides)
    return report


def _write(tmp_path: Path, reports: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for i, r in enumerate(reports):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(r), encoding="utf-8")
        paths.append(path)
    return paths


def test_seed_table_pairs_methods_by_seed_and_counts_the_target(bench: ModuleType, tmp_path: Path) -> None:
    paths = _write(
        tmp_path,
        [
            _report(None, {"memory_experts": (0.99, -0.4)}),  # seed 0, from the command (no --seed)
            _report(None, {"lora": (0.97, -0.6)}),
            _report(1, {"memory_experts": (0.85, -0.7), "lora": (1.0, -0.5)}),
            {**_report(2, {"memory_experts": (0.96, -0.3)}), "seed": 2},
        ],
    )
    out = tmp_path / "summary.json"
    summary = bench.seed_table(paths, out)
    memory, lora = summary["methods"]["memory_experts"], summary["methods"]["lora"]
    assert memory["seeds"] == 3 and lora["seeds"] == 2
    assert memory["recall_mean"] == pytest.approx((0.99 + 0.85 + 0.96) / 3)
    assert memory["recall_median"] == pytest.approx(0.96) and memory["recall_min"] == pytest.approx(0.85)
    assert memory["seeds_at_target"] == 2 and lora["seeds_at_target"] == 2
    # seed 0: |-0.4| < |-0.6|; seed 1: |-0.7| > |-0.5|; seed 2 has no LoRA run, so it is not paired
    assert summary["paired_seeds"] == 2 and summary["memory_smaller_general_change"] == 1
    assert json.loads(out.read_text(encoding="utf-8")) == summary
    assert sorted(summary["per_seed"]) == ["0", "1", "2"]


def test_seed_table_refuses_files_of_another_setting(bench: ModuleType, tmp_path: Path) -> None:
    longer = _report(1, {"lora": (1.0, -0.5)}, epochs=30)
    paths = _write(tmp_path, [_report(0, {"lora": (1.0, -0.5)}), longer])
    with pytest.raises(SystemExit, match=r"r1\.json: not the same setting as .*r0\.json: epochs differ"):
        bench.seed_table(paths, None)


def test_seed_table_refuses_a_method_twice_at_one_seed_and_another_config(
    bench: ModuleType, tmp_path: Path
) -> None:
    twice = _write(tmp_path, [_report(3, {"lora": (1.0, -0.5)}), _report(3, {"lora": (0.9, -0.5)})])
    with pytest.raises(SystemExit, match=r"r1\.json: seed 3 has lora twice"):
        bench.seed_table(twice, None)
    other = _report(4, {"lora": (1.0, -0.5)})
    other["methods"]["lora"]["config"] = {"type": "lora", "rank": 16}
    paths = _write(tmp_path, [_report(3, {"lora": (1.0, -0.5)}), other])
    with pytest.raises(SystemExit, match=r"r1\.json: lora has another config than in the other files"):
        bench.seed_table(paths, None)


@pytest.mark.real  # the replay pool and general-loss exchanges are the real chatterbot corpus
def test_both_methods_train_through_sft_run_on_the_planned_batches(bench: ModuleType, tmp_path: Path) -> None:
    from lmtune.errors import DataError

    out, work = tmp_path / "smoke.json", tmp_path / "work"
    argv = ["--model", "tiny", "--facts", "16", "--epochs", "2", "--general", "4", "--replay", "0.25"]
    argv += ["--layers", "-1", "--num-keys", "8", "--topk", "4", "--key-dim", "16", "--value-dim", "16"]
    try:
        bench.main([*argv, "--out", str(out), "--work", str(work)])
    except DataError as exc:
        pytest.skip(str(exc))
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["model"] == "tiny" and report["steps"] == 5  # (2 x 16 facts + 2 x 4 replayed) / 8
    assert set(report["methods"]) == {"memory_experts", "lora"}
    for name, m in report["methods"].items():
        assert m["batches_as_planned"], name  # the Trainer fed the old loop's batches, in its order
        assert m["trainable_parameters"] > 0 and m["general_loss_change"] != 0.0, name
        run = work / "runs" / name
        assert (run / "metrics.jsonl").is_file() and (run / "data" / "stats.json").is_file()
        # the final save (memory experts keep their own layout in model/), which the measurement loaded
        assert (run / ("adapter" if name == "lora" else "model")).is_dir(), name
