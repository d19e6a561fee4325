"""The preflight's peak-memory estimate against the measured peak, on CPU with SmolLM2-135M-Instruct.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory_estimate.py

Each configuration trains a few steps through `lmtune.train.sft.run` (the real stage, its preflight
included) in a fresh process. A thread samples the process's resident memory every millisecond; the
measured peak is the highest sample minus the resident memory just before `run` starts (after imports),
i.e. everything the run itself allocated: model, method, data, optimizer, activations. Rows are packed
to `data.max_length`, so every batch is as long as the preflight assumes. Prints estimate, measurement
and their ratio, and writes benchmarks/results/memory_estimate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "memory_estimate.json"

CONFIGS: dict[str, dict[str, Any]] = {
    "lora_r16_bs4_seq512": {
        "method": {"type": "lora", "rank": 16, "alpha": 32, "dropout": 0.0},
        "trainer": {"batch_size": 4},
        "data": {"max_length": 512},
    },
    "full_bs2_seq256": {
        "method": {"type": "full"},
        "trainer": {"batch_size": 2},
        "data": {"max_length": 256},
    },
    "lora_r16_bs8_seq512_ckpt": {
        "method": {"type": "lora", "rank": 16, "alpha": 32, "dropout": 0.0},
        "trainer": {"batch_size": 8, "gradient_checkpointing": True},
        "data": {"max_length": 512},
    },
}

CHILD = r"""
import json, os, sys, threading, time
import psutil
from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.train import preflight
from lmtune.train.sft import run

proc = psutil.Process()
peak = [0]
done = threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.001)

seen = {}
check = preflight.check

def spy(model, tokenizer, train, cfg):
    report = check(model, tokenizer, train, cfg)
    seen["estimate"] = report.memory
    seen["longest_row"] = report.longest_row
    return report

preflight.check = spy
cfg = build(RunConfig, json.loads(sys.argv[1]))
baseline = proc.memory_info().rss
thread = threading.Thread(target=sample, daemon=True)
thread.start()
run(cfg)
done.set()
thread.join()
m = seen["estimate"]
print("RESULT " + json.dumps({
    "baseline_bytes": baseline,
    "measured_bytes": peak[0] - baseline,
    "estimate": {"weights": m.weights, "gradients": m.gradients, "optimizer": m.optimizer,
                 "activations": m.activations, "total": m.total},
    "longest_row": seen["longest_row"],
}))
"""


def run_config(name: str, overrides: dict[str, Any], root: Path, steps: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": name,
        "output_dir": str(root),
        "model": {"path": "smollm2-135m-instruct"},
        "data": {
            "sources": [
                {
                    "path": "gsm8k",
                    "format": "prompt_completion",
                    "columns": {"prompt": "question", "completion": "answer"},
                }
            ],
            "packing": True,
            "eval_size": 8,
        },
        "trainer": {"max_steps": steps, "save_steps": 10_000, "logging_steps": 1, "device": "cpu"},
    }
    for key, value in overrides.items():
        cfg[key] = cfg.get(key, {}) | value if key != "method" else value
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    res = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env, check=False
    )
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{res.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    gib = 1 << 30
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            r = run_config(name, CONFIGS[name], Path(tmp), args.steps)
            r["ratio"] = r["estimate"]["total"] / r["measured_bytes"]
            results[name] = {"overrides": CONFIGS[name]} | r
            print(
                f"{name:<28} estimate {r['estimate']['total'] / gib:6.3f} GiB  measured "
                f"{r['measured_bytes'] / gib:6.3f} GiB  estimate/measured {r['ratio']:.3f}",
                flush=True,
            )
    report = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory_estimate.py "
        + " ".join(sys.argv[1:]),
        "model": "smollm2-135m-instruct",
        "device": f"{platform.machine()} CPU",
        "steps": args.steps,
        "configs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
