"""Alignment shown on the real SmolLM2-135M-Instruct with real GSM8K data, offline, on CPU: each demo is a
shipped config run through `lmtune align`, measured on its held-out split before and after training.

| demo   | config                     | what is measured (held-out)                                         |
| ------ | -------------------------- | ------------------------------------------------------------------- |
| reward | configs/align_reward.yaml  | pairwise accuracy: the reward model scores chosen above rejected     |
| dpo    | configs/align_dpo.yaml     | preference accuracy: implicit reward of chosen > rejected, margins  |
| grpo   | configs/align_grpo.yaml    | mean reward (answer format + correct number) of sampled answers     |
| ppo    | configs/align_ppo.yaml     | mean reward, and the KL to the reference                            |

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alignment_demos.py [--only reward dpo ...] [--reuse]

`--reuse` reads a demo's numbers from its finished run directory instead of training again. Writes
benchmarks/results/alignment_demos.json and the table between the `demos` markers of docs/alignment.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lmtune import align
from lmtune.config import loader
from lmtune.config.run import RunConfig
from lmtune.runtime.environment import library_versions
from lmtune.runtime.records import AlignEvalLog, TrainSummaryLog
from lmtune.runtime.rundir import RunDir
from lmtune.weights.view import align_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "alignment_demos.json"
DOCS = ROOT / "docs" / "alignment.md"
START, END = "<!-- demos:start -->", "<!-- demos:end -->"

DEMOS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "reward": ("configs/align_reward.yaml", [("pairwise accuracy", "eval_accuracy")]),
    "dpo": (
        "configs/align_dpo.yaml",
        [("preference accuracy", "eval_rewards/accuracies"), ("reward margin", "eval_rewards/margins")],
    ),
    "grpo": ("configs/align_grpo.yaml", [("mean reward", "eval_reward")]),
    "ppo": ("configs/align_ppo.yaml", [("mean reward", "eval_reward"), ("KL to reference", "eval_kl")]),
}
"""Demo name -> (config, [(what, metric key)]); `<key>_before` is the same measurement before training."""


def finished_metrics(aligned: RunDir) -> dict[str, float] | None:
    """The final and before-training eval metrics of a finished alignment run, or None."""
    if not aligned.final_weights().is_dir() or not aligned.metrics.is_file():
        return None
    records = aligned.read_metrics()
    final = [r for r in records if isinstance(r, AlignEvalLog) and r.kind == "align_eval"]
    before = [r for r in records if isinstance(r, AlignEvalLog) and r.kind == "align_eval_before"]
    if not final:
        return None
    skip = {"kind", "step", "epoch"}
    metrics = {k: v for k, v in final[-1].model_dump(exclude_unset=True).items() if k not in skip}
    if before:
        metrics |= {
            f"{k}_before": v for k, v in before[0].model_dump(exclude_unset=True).items() if k not in skip
        }
    metrics["steps"] = final[-1].step
    summary = [r for r in records if isinstance(r, TrainSummaryLog) and r.train_runtime is not None]
    if summary:
        metrics["train_seconds"] = summary[-1].train_runtime
    return metrics


def run_demo(name: str, reuse: bool) -> dict[str, Any]:
    """Run (or, with `reuse`, read) one demo; return its config, metrics and time."""
    config, shown = DEMOS[name]
    cfg = loader.load(RunConfig, ROOT / config)
    aligned = align_dir(RunDir.for_config(cfg))
    metrics = finished_metrics(aligned) if reuse else None
    seconds = None
    if metrics is None:
        started = time.perf_counter()
        result = align.run(cfg)
        seconds = round(time.perf_counter() - started, 1)
        metrics = {**result.metrics, "steps": result.steps}
    rows = [
        {"what": what, "key": key, "before": metrics.get(f"{key}_before"), "after": metrics.get(key)}
        for what, key in shown
    ]
    return {
        "config": config,
        "run_dir": str(aligned.root),
        "seconds": seconds,
        "rows": rows,
        "metrics": metrics,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown table of every demo's before -> after numbers."""
    lines = [
        "| demo | config | held-out measure | before | after | steps | train time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, demo in results.items():
        for row in demo["rows"]:
            numbers = f"{_fmt(row['before'])} | {_fmt(row['after'])}"
            steps = demo["metrics"].get("steps", "-")
            seconds = demo["metrics"].get("train_seconds") or demo["seconds"]
            took = f"{seconds / 60:.1f} min" if seconds else "-"
            lines.append(f"| {name} | `{demo['config']}` | {row['what']} | {numbers} | {steps} | {took} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_docs(text: str) -> None:
    """Replace the table between the demos markers of docs/alignment.md."""
    doc = DOCS.read_text(encoding="utf-8")
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOCS}: missing the {START} / {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(DEMOS), default=list(DEMOS))
    parser.add_argument("--reuse", action="store_true", help="read finished runs instead of training")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text())["demos"] if RESULTS.is_file() else {}
    for name in args.only:
        print(f"== {name} ==", flush=True)
        results[name] = run_demo(name, args.reuse)
    ordered = {name: results[name] for name in DEMOS if name in results}
    text = table(ordered)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alignment_demos.py",
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "versions": library_versions(),
                "demos": ordered,
            },
            indent=2,
        )
        + "\n"
    )
    write_docs(text)


if __name__ == "__main__":
    main()
