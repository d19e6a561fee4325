"""Training on 2 processes (DDP over gloo, launched by accelerate through `lmtune train --nproc 2`): the
same loss curve as 1 process with the same global batch, and its checkpoints resume in 1 process; the
processes enter through the same CLI as one process: the same progress lines, once, and a user error is
the same one `lmtune: error:` line and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmtune.runtime.rundir import RunDir
from lmtune.train import checkpoints
from lmtune.train.run_metrics import train_losses

STEPS = 6
CHATS = [
    [
        {
            "role": "user",
            "content": f"she has {a} apples and buys {b} more. how many apples are there now?"[: 30 + i],
        },
        {"role": "assistant", "content": f"she has {a + b} apples. " * (1 + i % 3) + f"#### {a + b}"},
    ]
    for i, (a, b) in enumerate(
        [(1, 2), (3, 4), (5, 1), (2, 7), (6, 3), (8, 1), (4, 4), (9, 2), (7, 7), (12, 5)]
    )
]
"""Chats of different lengths, so the two processes' halves of a batch hold different token counts."""


def _write_config(root: Path, model_dir: Path, name: str, **trainer: Any) -> Path:
    data = root / "chats.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"messages": CHATS[i % len(CHATS)]}) + "\n" for i in range(48)))
    cfg = {
        "name": name,
        "output_dir": str(root / "runs"),
        "seed": 3,
        "model": {"path": str(model_dir)},
        "data": {"sources": [{"path": str(data)}], "max_length": 96, "eval_size": 4},
        "method": {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.0},
        "trainer": {
            "max_steps": STEPS,
            "batch_size": 4,
            "learning_rate": 5e-3,
            "lr_scheduler": "constant",
            "logging_steps": 1,
            "save_steps": 3,
            "save_total_limit": None,
            "device": "cpu",
        }
        | trainer,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(config: Path, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "lmtune.cli", "train", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert res.returncode == status, res.stderr[-3000:]
    return res


def _lines(stderr: str, prefix: str) -> list[str]:
    """The lines holding `prefix`, from it on: the processes share stderr, so a line may follow another
    process's unfinished output (a progress bar writes no newline) on the same line."""
    return [line[line.index(prefix) :] for line in stderr.splitlines() if prefix in line]


def _losses(run_dir: Path) -> dict[int, float]:
    return train_losses(RunDir(run_dir))


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ddp")
    single = _write_config(root, tiny_model_dir, "single")
    one = _train(single)
    double = _write_config(root, tiny_model_dir, "double")
    out = _train(double, "trainer.batch_size=2", "--nproc", "2")
    return {
        "root": root,
        "single": root / "runs/single",
        "double": root / "runs/double",
        "stdout": out.stdout,
        "stderr": out.stderr,
        "single_stderr": one.stderr,
    }


def test_two_processes_follow_the_one_process_loss_curve(runs: dict[str, Any]) -> None:
    single, double = _losses(runs["single"]), _losses(runs["double"])
    assert sorted(single) == sorted(double) == list(range(1, STEPS + 1))
    for step in single:
        assert double[step] == pytest.approx(single[step], abs=1e-4), step
    assert single[STEPS] < single[1]  # it trains
    # One line from the run, not one per process.
    assert runs["stdout"].count("trained 6 steps") == 1


def test_both_paths_log_lmtunes_progress_lines_once(runs: dict[str, Any]) -> None:
    """The preflight line shows in `lmtune train` (one process) and once in `--nproc 2`, with the line
    naming the processes; the other process repeats none of them."""
    assert len(_lines(runs["single_stderr"], "lmtune: preflight: ")) == 1
    assert _lines(runs["single_stderr"], "lmtune: training on ") == []
    assert len(_lines(runs["stderr"], "lmtune: preflight: ")) == 1
    assert _lines(runs["stderr"], "lmtune: training on ") == [
        "lmtune: training on 2 processes (MULTI_CPU, backend gloo): global batch 4 rows"
    ]
    assert _lines(runs["stderr"], "lmtune[1]") == [] and "Traceback" not in runs["stderr"]


def test_a_user_error_in_the_processes_is_one_line_and_status_2(runs: dict[str, Any]) -> None:
    """Training a finished run again without --resume: the processes find the complete checkpoints (in
    the worker, past the config check) and the run stops as one process stops: status 2, the same single
    `lmtune: error:` line, no traceback (not the other process's lost connection, nor the launcher's)."""
    config = runs["root"] / "double.yaml"
    one = _train(config, "trainer.batch_size=2", status=2)
    two = _train(config, "trainer.batch_size=2", "--nproc", "2", status=2)
    expected = _lines(one.stderr, "lmtune: error: ")
    assert len(expected) == 1 and "already holds the complete checkpoint checkpoint-6" in expected[0]
    assert _lines(two.stderr, "lmtune: error: ") == expected
    assert "Traceback" not in two.stderr and "ChildFailedError" not in two.stderr
    assert two.stdout == ""


def test_an_error_every_process_raises_is_reported_once(runs: dict[str, Any], tiny_model_dir: Path) -> None:
    """FSDP2 with a method whose weights lmtune cannot gather: both processes refuse it at once (after
    the data stage); the run reports it once, with status 2."""
    config = _write_config(runs["root"], tiny_model_dir, "fsdp_freeze", max_steps=2)
    _set_method(config, {"type": "freeze", "trainable": ["lm_head"]})
    res = _train(config, "--nproc", "2", "--accelerate-config", str(FSDP2), status=2)
    (error,) = _lines(res.stderr, "lmtune: error: ")
    assert error.startswith("lmtune: error: method 'freeze' saves its own format, which lmtune cannot gather")
    assert "Traceback" not in res.stderr


def test_two_process_run_saves_one_set_of_weights_and_manifests(runs: dict[str, Any]) -> None:
    double = runs["double"]
    assert (double / "adapter/adapter_model.safetensors").is_file()
    done = [
        p.name
        for _, p in checkpoints.list_checkpoints(double / "checkpoints")
        if checkpoints.verify(p) is None
    ]
    assert done == ["checkpoint-3", "checkpoint-6"]
    # Each process kept its own RNG state in the checkpoint.
    assert {p.name for p in (double / "checkpoints/checkpoint-3").glob("rng_state*")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }


def test_two_process_checkpoint_resumes_in_one_process(runs: dict[str, Any], tiny_model_dir: Path) -> None:
    root: Path = runs["root"]
    # Two processes stop at step 3 (checkpoint-3); one process resumes with the same global batch.
    half = _write_config(root, tiny_model_dir, "half", max_steps=3)
    _train(half, "trainer.batch_size=2", "--nproc", "2")
    resume = _train(half, "trainer.max_steps=6", "--resume")
    assert _lines(resume.stderr, "lmtune: resuming from ") == [
        f"lmtune: resuming from {root / 'runs/half/checkpoints/checkpoint-3'}"
    ]
    resumed, single = _losses(root / "runs/half"), _losses(runs["single"])
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(4, STEPS + 1):
        assert resumed[step] == pytest.approx(single[step], abs=1e-4), step


FSDP2 = Path(__file__).resolve().parents[2] / "configs/accelerate/fsdp2.yaml"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp2_on_two_processes_follows_one_process_and_saves_whole_weights(
    runs: dict[str, Any], tiny_model_dir: Path, method: str
) -> None:
    """FSDP2 (weights, gradients and optimizer state sharded over 2 gloo processes) learns what one
    process learns, and the engine's gathering save writes whole weights that load without lmtune."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root: Path = runs["root"]
    kind = {"type": method} if method == "full" else {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.0}
    single_dir = runs["single"]
    if method == "full":
        single = _write_config(root, tiny_model_dir, "single_full", learning_rate=1e-3)
        _set_method(single, kind)
        _train(single)
        single_dir = root / "runs/single_full"
    sharded = _write_config(
        root, tiny_model_dir, f"fsdp_{method}", learning_rate=1e-3 if method == "full" else 5e-3
    )
    _set_method(sharded, kind)
    _train(sharded, "trainer.batch_size=2", "--nproc", "2", "--accelerate-config", str(FSDP2))
    one, two = _losses(single_dir), _losses(root / f"runs/fsdp_{method}")
    assert sorted(two) == list(range(1, STEPS + 1))
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-4), step
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if method == "full":
        saved = AutoModelForCausalLM.from_pretrained(root / f"runs/fsdp_{method}/model")
        reference = AutoModelForCausalLM.from_pretrained(single_dir / "model")
    else:
        saved = PeftModel.from_pretrained(base, root / f"runs/fsdp_{method}/adapter")
        reference = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), single_dir / "adapter"
        )
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        assert torch.allclose(saved(ids).logits, reference(ids).logits, atol=1e-3)


def _set_method(config: Path, method: dict[str, Any]) -> None:
    cfg = yaml.safe_load(config.read_text())
    cfg["method"] = method
    config.write_text(yaml.safe_dump(cfg))
