"""Kill a training process with SIGKILL mid-run, resume it, and get exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from lmtune.train import checkpoints

# The child trains through the real entry point; a callback slows each step so the parent can land its
# kill while training is in flight (it changes no number the run computes).
CHILD = """
import json, sys, time
from transformers import TrainerCallback
from lmtune.config.loader import build
from lmtune.config.run import RunConfig
from lmtune.train.sft import run

class Slow(TrainerCallback):
    ran = 0

    def on_step_end(self, args, state, control, **kwargs):
        Slow.ran += 1
        time.sleep(float(sys.argv[3]))

cfg = build(RunConfig, json.loads(sys.argv[1]))
result = run(cfg, resume=sys.argv[2] == "resume", callbacks=[Slow()])
print("STEPS", result.steps, "RAN", Slow.ran)
"""

STEPS = 24
SAVE_EVERY = 4


def _config(root: Path, model_dir: Path, data: Path, name: str) -> str:
    return json.dumps(
        {
            "name": name,
            "output_dir": str(root / "runs"),
            "seed": 7,
            "model": {"path": str(model_dir)},
            "data": {"sources": [{"path": str(data)}], "max_length": 64, "eval_size": 4},
            "method": {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.0},
            "trainer": {
                "max_steps": STEPS,
                "batch_size": 4,
                "learning_rate": 5e-3,
                "logging_steps": 1,
                "save_steps": SAVE_EVERY,
                "save_total_limit": 3,
                "device": "cpu",
            },
        }
    )


def _start(config: str, mode: str, delay: float) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config, mode, str(delay)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _write_data(path: Path) -> None:
    names = ["apples", "books", "cats", "dogs", "clips"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(44):
            a, b, n = i % 9 + 1, (i * 7) % 9 + 1, names[i % 5]
            record = {
                "messages": [
                    {"role": "user", "content": f"she has {a} {n} and buys {b} more. how many {n}?"},
                    {"role": "assistant", "content": f"she has {a + b} {n}. #### {a + b}"},
                ]
            }
            f.write(json.dumps(record) + "\n")


def test_sigkill_then_resume_matches_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    _write_data(data)
    runs = tmp_path / "runs"

    # The uninterrupted reference runs alongside the run that gets killed (2 processes, 2 cores).
    reference = _start(_config(tmp_path, tiny_model_dir, data, "whole"), "fresh", 0.0)
    victim = _start(_config(tmp_path, tiny_model_dir, data, "killed"), "fresh", 0.05)
    ckpts = runs / "killed" / "checkpoints"
    deadline = time.monotonic() + 90
    while True:
        done = [
            s
            for s, p in checkpoints.list_checkpoints(ckpts)
            if s >= 8 and (p / checkpoints.MANIFEST).is_file()
        ]
        if done:
            break
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no complete checkpoint past step 8 appeared"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (runs / "killed" / "adapter").exists(), "killed before the end: no final weights"
    killed_at = checkpoints.latest_complete(ckpts)
    assert killed_at is not None and checkpoints.checkpoint_step(killed_at) < STEPS

    resumed = _start(_config(tmp_path, tiny_model_dir, data, "killed"), "resume", 0.0)
    resumed_from = checkpoints.checkpoint_step(killed_at)
    assert resumed_from is not None
    # The resumed process ran only the steps after the checkpoint (a fresh start would also match the
    # reference, since both use the same seed).
    assert f"STEPS {STEPS} RAN {STEPS - resumed_from}" in _finish(resumed)
    assert f"STEPS {STEPS} RAN {STEPS}" in _finish(reference)

    got = load_file(runs / "killed" / "adapter" / "adapter_model.safetensors")
    want = load_file(runs / "whole" / "adapter" / "adapter_model.safetensors")
    assert got.keys() == want.keys() and got
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run by {worst}"
    base_changed = max(want[k].abs().max().item() for k in want if "lora_B" in k)
    assert base_changed > 0, "training moved the adapter away from its zero init"

    # metrics.jsonl: every step logged exactly once, with the same losses as the uninterrupted run.
    def losses(name: str) -> dict[int, float]:
        lines = (runs / name / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(x) for x in lines if json.loads(x).get("kind") == "train"]
        steps = [r["step"] for r in records]
        assert steps == list(range(1, STEPS + 1)), steps
        return {r["step"]: r["loss"] for r in records}

    whole, killed = losses("whole"), losses("killed")
    assert all(abs(whole[s] - killed[s]) <= 1e-5 for s in whole)
