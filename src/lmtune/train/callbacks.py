"""Trainer callbacks: metrics to metrics.jsonl, checkpoint manifests, and the non-finite guard.

Imports transformers at module level: import this module only inside a stage's `run()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lmtune.errors import TrainingError
from lmtune.runtime.rundir import RunDir
from lmtune.train import checkpoints

_TRAIN_KEYS = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "router_aux_loss": "router_aux_loss",
}


class MetricsCallback(TrainerCallback):
    """Append each Trainer log to metrics.jsonl as one JSON object.

    Records (always with `step` and `epoch`):
      `{"kind": "train", "loss", "learning_rate", "grad_norm"}` every `trainer.logging_steps` (MoE models
        also `router_aux_loss`, see `lmtune.train.moe`; alignment trainers their own numbers, e.g.
        `rewards/accuracies`, `kl`, `reward`),
      `{"kind": "eval", "eval_loss"}` after each evaluation,
      `{"kind": "train_summary", "train_runtime", "train_loss", ...}` once at the end.
    """

    def __init__(self, rundir: RunDir) -> None:
        self.rundir = rundir

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        where = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 6)}
        if "eval_loss" in logs:
            record = {"kind": "eval", **where, **{k: v for k, v in logs.items() if k.startswith("eval_")}}
        elif "loss" in logs:
            record = {
                "kind": "train",
                **where,
                **{out: logs[k] for k, out in _TRAIN_KEYS.items() if k in logs},
                **{
                    k: v
                    for k, v in logs.items()
                    if k not in _TRAIN_KEYS and k != "epoch" and isinstance(v, int | float)
                },
            }
        elif "train_runtime" in logs:
            record = {"kind": "train_summary", **where, **logs}
        else:
            return
        self.rundir.append_metrics(record)


class ManifestCallback(TrainerCallback):
    """After Trainer saves `checkpoint-N`, write its manifest (making it count), then rotate old ones.

    Trainer's own rotation is turned off (`save_total_limit=None`): it could delete the last complete
    checkpoint before the new one has its manifest.
    """

    def __init__(self, keep: int | None) -> None:
        self.keep = keep

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.world_size > 1:
            # Every process writes its own part (its RNG state, shards): hash the folder once all have.
            # deferred: accelerate only when this runs (keeps `import lmtune...` light)
            from accelerate import PartialState

            PartialState().wait_for_everyone()
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        checkpoints.write_manifest(folder, state.global_step)
        checkpoints.rotate(folder.parent, self.keep)


class AlreadyFinished(Exception):
    """Raised by `FinishedRunStop`: the resumed checkpoint is already the last step."""


class FinishedRunStop(TrainerCallback):
    """Stop before any step when training resumes from a checkpoint at (or past) the last step.

    Trainer, resumed from its final checkpoint when the last epoch is partial, would run one step past
    `max_steps` (its stop check comes after each step). The weights, already loaded from the checkpoint
    when `on_train_begin` fires, are the final ones.
    """

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise AlreadyFinished


class NonFiniteGuard(TrainerCallback):
    """Stop training with TrainingError at the first non-finite loss, gradient or trainable weight.

    The loss is watched through a forward hook on the model (every training micro-batch); gradients are
    checked before the optimizer step, weights right after it. The error is raised before Trainer's
    log/save/evaluate for that step, so no checkpoint after the bad step is written, and `run()` writes no
    final weights.
    """

    def __init__(self, checkpoints_dir: Path) -> None:
        self.checkpoints_dir = checkpoints_dir
        self.bad_loss: float | None = None
        self._handle: Any = None

    def attach(self, model: torch.nn.Module) -> None:
        """Watch the loss of every training forward pass of `model`."""
        self._handle = model.register_forward_hook(self._watch_loss)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _watch_loss(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if module.training and loss is not None and self.bad_loss is None and not torch.isfinite(loss).all():
            self.bad_loss = float(loss.detach().float().reshape(-1)[0].item())

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step = state.global_step + 1
        if self.bad_loss is not None:
            self._stop(step, f"non-finite loss ({self.bad_loss})")
        grads = {n: p.grad for n, p in kwargs["model"].named_parameters() if p.grad is not None}
        bad = _first_non_finite(grads)
        if bad is not None:
            self._stop(step, f"non-finite gradient in {bad}")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        weights = {n: p for n, p in kwargs["model"].named_parameters() if p.requires_grad}
        bad = _first_non_finite(weights)
        if bad is not None:
            self._stop(state.global_step, f"non-finite weights in {bad} after the optimizer step")

    def _stop(self, step: int, what: str) -> None:
        last = checkpoints.latest_complete(self.checkpoints_dir)
        kept = f"the last complete checkpoint is {last}" if last else "no checkpoint was written"
        raise TrainingError(
            f"training stopped at step {step}: {what}; nothing from this step was saved ({kept}). "
            "Lower trainer.learning_rate, check the data, or train in float32"
        )


@torch.no_grad()
def _first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """Name of the first tensor holding a NaN or inf (one device sync when all are finite)."""
    if not tensors:
        return None
    flags = torch.stack([torch.isfinite(t).all() for t in tensors.values()])
    if bool(flags.all()):
        return None
    return next(name for name, ok in zip(tensors, flags.tolist(), strict=True) if not ok)
