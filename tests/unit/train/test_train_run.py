"""`sft.run` end to end on the tiny model: weights, metrics.jsonl, config, lineage, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from lmtune.config.loader import load
from lmtune.config.run import RunConfig
from lmtune.errors import TrainingError
from lmtune.runtime.rundir import RunDir
from lmtune.train import checkpoints
from lmtune.train.sft import run


def _records(rundir: RunDir, kind: str) -> list[dict[str, Any]]:
    lines = rundir.metrics.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def test_lora_run_writes_adapter_metrics_config_and_lineage(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config(trainer={"max_steps": 24, "logging_steps": 4, "save_steps": 8, "save_total_limit": 2})
    result = run(cfg)
    rundir = RunDir.for_config(cfg)

    assert result.steps == 24 and result.run_dir == rundir.root
    assert result.weights_path == rundir.adapter == rundir.final_weights()
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (rundir.adapter / name).is_file(), name
    assert not rundir.model.exists()

    train = _records(rundir, "train")
    assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24]
    for r in train:
        assert {"step", "epoch", "loss", "learning_rate", "grad_norm"} <= r.keys()
        assert all(math.isfinite(r[k]) for k in ("loss", "learning_rate", "grad_norm", "epoch"))
    assert train[-1]["loss"] < train[0]["loss"], "loss falls"
    assert train[-1]["epoch"] > train[0]["epoch"]
    assert result.train_loss == train[-1]["loss"]
    (final_eval,) = _records(rundir, "eval")
    assert final_eval["step"] == 24 and final_eval["eval_loss"] == pytest.approx(result.eval_loss)
    assert len(_records(rundir, "train_summary")) == 1

    assert load(RunConfig, rundir.config) == cfg
    lineage = json.loads(rundir.lineage.read_text())
    assert lineage["seed"] == cfg.seed
    assert lineage["base_model"]["path"] == cfg.model.path and len(lineage["base_model"]["sha256"]) == 64
    assert {"lmtune", "torch", "transformers", "peft", "trl"} <= lineage["versions"].keys()
    assert "git_commit" in lineage and "data_fingerprint" in lineage  # the data stage adds its own fields

    kept = checkpoints.list_checkpoints(rundir.checkpoints)
    assert [s for s, _ in kept] == [16, 24], "save_total_limit keeps the newest two"
    assert all(checkpoints.verify(p) is None for _, p in kept)
    assert result.seconds > 0


def test_full_run_writes_a_loadable_model_folder(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config(method={"type": "full"}, trainer={"learning_rate": 1e-3})
    result = run(cfg)
    rundir = RunDir.for_config(cfg)
    assert result.weights_path == rundir.model == rundir.final_weights()
    assert not rundir.adapter.exists()
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (rundir.model / name).is_file(), name
    model = AutoModelForCausalLM.from_pretrained(rundir.model)
    assert model.config.use_cache is True, "the KV cache switched off for training is back on for inference"


def test_a_second_fresh_run_over_checkpoints_is_refused(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config()
    run(cfg)
    with pytest.raises(TrainingError) as err:
        run(cfg)
    ckpts = RunDir.for_config(cfg).checkpoints
    assert str(err.value) == (
        f"{ckpts} already holds the complete checkpoint checkpoint-6: resume it "
        "(`lmtune train ... --resume`), or choose another run name"
    )
    # resuming a finished run trains nothing more (Trainer alone would take a 7th step) and logs no step twice
    assert run(cfg, resume=True).steps == 6
    steps = [r["step"] for r in _records(RunDir.for_config(cfg), "train")]
    assert steps == [2, 4, 6]
    final = load_file(RunDir.for_config(cfg).adapter / "adapter_model.safetensors")
    last = load_file(ckpts / "checkpoint-6" / "adapter_model.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)


def test_resume_without_a_complete_checkpoint_starts_fresh(
    run_config: Callable[..., RunConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = run_config(trainer={"max_steps": 2})
    torn = RunDir.for_config(cfg).checkpoints / "checkpoint-4"
    torn.mkdir(parents=True)
    (torn / "optimizer.pt").write_bytes(b"half")
    with caplog.at_level(logging.WARNING):
        result = run(cfg, resume=True)
    assert result.steps == 2
    assert f"no complete checkpoint in {torn.parent}: starting training from the beginning" in caplog.text
    assert not torn.exists(), "the torn checkpoint was cleared, not mixed into the new run"


class _SeeInputs(TrainerCallback):
    """Records the keyword arguments of each training forward pass and the model's use_cache setting."""

    def __init__(self) -> None:
        self.seen: list[tuple[set[str], bool]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]

        def hook(module: Any, a: Any, kw: dict[str, Any]) -> None:
            if module.training:
                self.seen.append((set(kw), bool(model.config.use_cache)))

        model.register_forward_pre_hook(hook, with_kwargs=True)


def test_packed_rows_train_with_position_ids_and_no_cache(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config(data={"packing": True, "max_length": 96}, trainer={"max_steps": 2, "batch_size": 2})
    seen = _SeeInputs()
    run(cfg, callbacks=[seen])
    assert len(seen.seen) == 2
    for keys, use_cache in seen.seen:
        assert {"input_ids", "labels", "position_ids"} <= keys and "attention_mask" not in keys
        assert use_cache is False, "a KV cache would disable the per-example mask of packed rows"


def test_unpacked_rows_train_with_an_attention_mask(run_config: Callable[..., RunConfig]) -> None:
    seen = _SeeInputs()
    run(run_config(trainer={"max_steps": 1}), callbacks=[seen])
    ((keys, _),) = seen.seen
    assert {"input_ids", "labels", "attention_mask"} <= keys and "position_ids" not in keys


def test_train_verb_trains_logs_and_reports_user_errors(
    run_config: Callable[..., RunConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lmtune train` shows lmtune's progress lines (the preflight; the resume point on --resume) and a
    user error as one line with status 2."""
    from lmtune.cli import main
    from lmtune.config.loader import dump

    path = tmp_path / "run.yaml"
    path.write_text(dump(run_config()))
    args = ["train", str(path), "name=cli", "trainer.save_steps=1"]
    assert main([*args, "trainer.max_steps=1"]) == 0
    out, err = capsys.readouterr()
    assert "trained 1 steps -> " in out
    assert "lmtune: preflight: " in err and " trained tokens, peak memory ~" in err
    assert "lmtune: resuming from" not in err
    assert (tmp_path / "runs" / "cli" / "adapter" / "adapter_model.safetensors").is_file()
    assert main([*args, "trainer.max_steps=2", "--resume"]) == 0
    out, err = capsys.readouterr()
    assert f"lmtune: resuming from {tmp_path / 'runs' / 'cli' / 'checkpoints' / 'checkpoint-1'}\n" in err
    assert "trained 2 steps -> " in out
    assert main([*args, "trainer.max_steps=2"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lmtune: error: ")]
    assert len(errors) == 1 and "already holds the complete checkpoint checkpoint-2" in errors[0]
    assert "Traceback" not in err


@pytest.mark.real
def test_real_smollm2_lora_steps_pass_preflight_and_save_an_adapter(
    smollm2_dir: Path, run_config: Callable[..., RunConfig]
) -> None:
    cfg = run_config(
        model={"path": str(smollm2_dir)},
        trainer={"max_steps": 2, "logging_steps": 1, "learning_rate": 5e-4, "save_steps": 2},
    )
    result = run(cfg)
    train = _records(RunDir.for_config(cfg), "train")
    assert [r["step"] for r in train] == [1, 2]
    assert all(math.isfinite(r["loss"]) and 0 < r["loss"] < 10 for r in train)
    assert (result.weights_path / "adapter_model.safetensors").is_file()
    assert result.eval_loss is not None and math.isfinite(result.eval_loss)


def test_periodic_eval_and_gradient_accumulation(run_config: Callable[..., RunConfig]) -> None:
    cfg = run_config(trainer={"max_steps": 4, "eval_steps": 2, "grad_accum": 2, "batch_size": 2})
    run(cfg)
    rundir = RunDir.for_config(cfg)
    assert [r["step"] for r in _records(rundir, "eval")] == [2, 4, 4]  # every 2 steps, then the final one
    train = _records(rundir, "train")
    # 36 training rows, 2 x 2 rows per optimizer step: each step advances the epoch by 4/36
    assert train[0]["epoch"] == pytest.approx(2 * 4 / 36, abs=1e-6)
