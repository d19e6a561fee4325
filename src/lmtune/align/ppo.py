"""Proximal Policy Optimisation with a value head, a KL penalty to the reference and GAE: lmtune's own
compact loop (TRL removed its PPO trainer in 1.13).

Read `run` top to bottom. Each step: take `rollout_batch_size` prompts (seeded order) -> sample one
completion each (seeded by (seed, step)) -> score them (reward model and/or verifiable rewards) -> old
log-probs and values (policy), reference log-probs (the policy with its adapter disabled, or a frozen
copy under full fine-tuning) -> per-token rewards -KL + score -> GAE -> `ppo_epochs` passes of mini-batch
updates of the clipped policy loss + vf_coef * clipped value loss. The math is in
`lmtune.align.policy_losses` and `lmtune.align.rollout.token_rewards`.

The policy runs in eval mode throughout (dropout off), as in TRL's PPO: the log-probs of the update
then equal those of the rollout until the weights move, so the importance ratio starts at exactly 1.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.align import session
from lmtune.align.policy_losses import gae, masked_mean, ppo_policy_loss, ppo_value_loss, whiten
from lmtune.align.ppo_checkpoint import load_checkpoint, save_checkpoint
from lmtune.align.ppo_loop import Loop
from lmtune.align.rollout import EVAL_STEP, Sampling, Scorer, prompt_indices, sample, step_seed, token_rewards
from lmtune.align.session import AlignResult
from lmtune.align.value_head import (
    VALUE_HEAD_FILE,
    ValueHead,
    completion_logps_values,
    hidden_size,
    save_value_head,
)
from lmtune.config.align.ppo import PpoConfig
from lmtune.errors import ConfigError, TrainingError
from lmtune.runtime.device import pick_device
from lmtune.runtime.load import load_model
from lmtune.runtime.rundir import atomic_write_text
from lmtune.train import checkpoints, sft
from lmtune.train.callbacks import _first_non_finite
from lmtune.train.run_metrics import last_train_loss

if TYPE_CHECKING:
    import torch
    from datasets import Dataset

    from lmtune.align.rewards import RewardFunction
    from lmtune.align.rollout import Batch
    from lmtune.align.session import AlignResult, Session
    from lmtune.align.value_head import ValueHead
    from lmtune.config.run import RunConfig

EVAL_FILE = "eval.json"


def run(
    cfg: RunConfig, objective: PpoConfig, resume: bool = False, extra_rewards: Sequence[RewardFunction] = ()
) -> AlignResult:
    """Train the policy with PPO on `objective.data` (prompts) into `<run>/align/`.

    `extra_rewards` are Python reward callables added to the configured rewards (weight 1). With `resume`,
    training continues from the newest complete checkpoint and reproduces the uninterrupted run.

    Raises:
        ConfigError: the reward model folder is missing, or the method needs trainer callbacks.
        TrainingError: a complete checkpoint exists and `resume` is off, or a non-finite loss/gradient/weight.
    """
    # deferred: tqdm only when this runs (keeps `import lmtune...` light)
    from tqdm.auto import tqdm

    started = time.perf_counter()
    reward_model = _reward_model(objective)
    s = session.open_session(cfg, objective, resume)
    tok = session.tokenizer(s)
    train, evals = session.datasets(s, tok, "prompt")
    model = session.policy(s)
    _check_method(s, model)
    device = _device(s)
    model.eval()  # dropout off: see the module docstring
    if next(model.parameters()).device != device:  # (a quantized model refuses `.to`: it is loaded in place)
        model.to(device)
    head = ValueHead(hidden_size(model)).to(device)
    total = _total_steps(objective, len(train))
    params, optimizer, scheduler = _optimizer(model, head, s, total)
    loop = Loop(
        objective=objective,
        method=s.view.method,
        model=model,
        head=head,
        frozen_reference=_frozen_reference(s, model, device),
        tok=tok,
        scorer=Scorer(reward_model, objective.rewards, extra_rewards, s.view.model.dtype, device),
        sampling=Sampling(objective.max_new_tokens, objective.temperature, objective.top_p, cfg.seed),
        optimizer=optimizer,
        scheduler=scheduler,
        params=params,
        max_grad_norm=s.view.trainer.max_grad_norm,
        checkpoints=s.aligned.checkpoints,
    )

    if s.resume_from is not None:
        step, before = load_checkpoint(loop, s.resume_from)
    else:
        step, before = 0, evaluate(loop, evals) if objective.eval_before else {}
        if before:
            s.aligned.append_metrics({"kind": "align_eval_before", "step": 0, **_prefixed(before, "eval_")})

    bar = tqdm(total=total, initial=step, desc="ppo", unit="step")
    training_started, first_step = time.perf_counter(), step
    while step < total:
        step += 1
        record = ppo_step(loop, train, step)
        s.aligned.append_metrics({"kind": "train", "step": step, **record})
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}", kl=f"{record['kl']:.3f}")
        if step % s.view.trainer.save_steps == 0 or step == total:
            folder = s.aligned.checkpoints / f"checkpoint-{step}"
            save_checkpoint(loop, folder, step, before, s.view.trainer.save_total_limit)
    bar.close()
    runtime = round(time.perf_counter() - training_started, 3)
    s.aligned.append_metrics(
        {"kind": "train_summary", "step": step, "train_runtime": runtime, "steps_run": step - first_step}
    )

    after = evaluate(loop, evals)
    metrics = {**_prefixed(before, "eval_", "_before"), **_prefixed(after, "eval_")}
    s.aligned.append_metrics({"kind": "align_eval", "step": step, **_prefixed(after, "eval_")})
    atomic_write_text(s.aligned.root / EVAL_FILE, json.dumps({"steps": step, **metrics}, indent=2))
    weights = sft.save_final(model, tok, s.view, s.aligned)
    save_value_head(head, s.aligned.root / VALUE_HEAD_FILE)
    return AlignResult(
        run_dir=s.aligned.root,
        steps=step,
        train_loss=last_train_loss(s.aligned),
        metrics=metrics,
        weights_path=weights,
        seconds=time.perf_counter() - started,
    )


def ppo_step(loop: Loop, train: Dataset, step: int) -> dict[str, float]:
    """One PPO step (rollout, advantages, `ppo_epochs` passes of mini-batch updates); its metrics."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    o = loop.objective
    rows = prompt_indices(len(train), o.rollout_batch_size, step, loop.sampling.seed)
    prompts = [train[i]["prompt"] for i in rows]
    answers = [train[i].get("answer") for i in rows]
    batch = sample(loop.model, loop.tok, prompts, loop.sampling, step)
    scores = loop.scorer(prompts, batch.completions, answers).to(batch.mask.device)
    with torch.no_grad():
        old_logps, old_values = _logps_values(loop, batch, loop.head)
        assert old_values is not None
        kl = old_logps - reference_logps(loop, batch)
    mask = batch.mask.to(old_logps.dtype)
    rewards = token_rewards(scores, kl, mask, o.kl_coef)
    advantages, returns = gae(rewards, old_values, mask, o.gamma, o.lam)
    if o.whiten_advantages:
        advantages = whiten(advantages, mask) * mask

    g = torch.Generator().manual_seed(step_seed(loop.sampling.seed, step))
    totals: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "loss": [], "clipfrac": []}
    grad_norms = []
    for _ in range(o.ppo_epochs):
        for idx in torch.randperm(len(rows), generator=g).to(mask.device).split(o.mini_batch_size):
            logps, values = completion_logps_values(
                loop.model,
                loop.head,
                batch.input_ids[idx],
                batch.attention_mask[idx],
                batch.prompt_length,
                o.temperature,
            )
            assert values is not None
            policy_loss, clipfrac = ppo_policy_loss(
                logps, old_logps[idx], advantages[idx], mask[idx], o.clip_eps
            )
            value_loss = ppo_value_loss(values, old_values[idx], returns[idx], mask[idx], o.value_clip)
            loss = policy_loss + o.vf_coef * value_loss
            grad_norms.append(_update(loop, loss, step))
            for key, value in (
                ("policy_loss", policy_loss),
                ("value_loss", value_loss),
                ("loss", loss),
                ("clipfrac", clipfrac),
            ):
                totals[key].append(float(value.detach()))
    loop.scheduler.step()
    return {
        "reward": float(scores.mean()),
        "reward_std": float(scores.std()) if len(rows) > 1 else 0.0,
        "kl": float((kl * mask).sum(1).mean()),
        "value": float(masked_mean(old_values, mask)),
        **{k: sum(v) / len(v) for k, v in totals.items()},
        "grad_norm": sum(grad_norms) / len(grad_norms),
        "learning_rate": float(loop.optimizer.param_groups[0]["lr"]),
        "completion_tokens": float(mask.sum(1).mean()),
    }


def reference_logps(loop: Loop, batch: Batch) -> torch.Tensor:
    """Log-probs of the completions under the reference: the frozen copy, or the policy with its adapter
    disabled (`lmtune.methods.base_view`: no second copy in memory)."""
    if loop.frozen_reference is not None:
        return _logps_values(loop, batch, None, loop.frozen_reference)[0]

    view = methods.base_view(loop.model, loop.method)
    assert view is not None  # else `_frozen_reference` loaded a copy
    with view:
        return _logps_values(loop, batch, None)[0]


def evaluate(loop: Loop, evals: Dataset | None) -> dict[str, float]:
    """Mean sequence reward and mean summed KL (policy vs reference) of completions sampled for the
    held-out prompts with a fixed seed (the same before and after training); empty without held-out data."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if evals is None:
        return {}
    rewards: list[float] = []
    kls: list[float] = []
    size = loop.objective.rollout_batch_size
    for start in range(0, len(evals), size):
        rows = evals.select(range(start, min(start + size, len(evals))))
        prompts, answers = list(rows["prompt"]), [r.get("answer") for r in rows]
        batch = sample(loop.model, loop.tok, prompts, loop.sampling, EVAL_STEP - start)
        rewards += loop.scorer(prompts, batch.completions, answers).tolist()
        with torch.no_grad():
            kl = _logps_values(loop, batch, None)[0] - reference_logps(loop, batch)
        kls += (kl * batch.mask).sum(1).tolist()
    return {"reward": sum(rewards) / len(rewards), "kl": sum(kls) / len(kls)}


def _update(loop: Loop, loss: torch.Tensor, step: int) -> float:
    """Backward + clip + AdamW step, refusing non-finite losses, gradients and weights (nothing is
    saved from the step that failed). Returns the gradient norm before clipping."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    if not torch.isfinite(loss):
        _stop(loop, step, f"non-finite loss ({float(loss.detach())})")
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    bad = _first_non_finite({n: p.grad for n, p in _named(loop) if p.grad is not None})
    if bad is not None:
        _stop(loop, step, f"non-finite gradient in {bad}")
    norm = torch.nn.utils.clip_grad_norm_(loop.params, loop.max_grad_norm)
    loop.optimizer.step()
    bad = _first_non_finite(dict(_named(loop)))
    if bad is not None:
        _stop(loop, step, f"non-finite weights in {bad} after the optimizer step")
    return float(norm)


def _stop(loop: Loop, step: int, what: str) -> None:
    last = checkpoints.latest_complete(loop.checkpoints)
    kept = f"the last complete checkpoint is {last}" if last else "no checkpoint was written"
    raise TrainingError(
        f"training stopped at step {step}: {what}; nothing from this step was saved ({kept}). "
        "Lower trainer.learning_rate, check the data and rewards, or train in float32"
    )


def _named(loop: Loop) -> list[tuple[str, torch.nn.Parameter]]:
    policy = [(n, p) for n, p in loop.model.named_parameters() if p.requires_grad]
    return policy + [(f"value_head.{n}", p) for n, p in loop.head.named_parameters()]


def _logps_values(
    loop: Loop, batch: Batch, head: ValueHead | None, model: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return completion_logps_values(
        model if model is not None else loop.model,
        head,
        batch.input_ids,
        batch.attention_mask,
        batch.prompt_length,
        loop.objective.temperature,
    )


def _optimizer(
    model: torch.nn.Module, head: ValueHead, s: Session, total: int
) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer, Any]:
    """AdamW over the method's trainable parameters (its own groups when it has them) and the value head,
    at trainer.learning_rate, with trainer.lr_scheduler stepped once per PPO step."""
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import get_scheduler

    t = s.view.trainer
    groups = methods.param_groups(model, s.view.method, t.learning_rate) or [
        {"params": [p for p in model.parameters() if p.requires_grad]}
    ]
    groups = [*groups, {"params": list(head.parameters())}]
    optimizer = torch.optim.AdamW(groups, lr=t.learning_rate, weight_decay=t.weight_decay)
    scheduler = get_scheduler(
        t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=total
    )
    return [p for g in groups for p in g["params"]], optimizer, scheduler


def _total_steps(objective: PpoConfig, prompts: int) -> int:
    t = objective.trainer
    if t.max_steps > 0:
        return t.max_steps
    return max(1, math.ceil(t.epochs * prompts / objective.rollout_batch_size))


def _frozen_reference(s: Session, model: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    """None when the policy computes the reference with its adapter disabled; else a frozen copy of the
    start model (full fine-tuning, and methods whose base view is not the start model)."""

    if methods.base_view(model, s.view.method) is not None:
        return None
    ref = load_model(s.view.model, device=device.type).eval().to(device)
    ref.requires_grad_(False)
    return ref


def _device(s: Session) -> torch.device:
    """trainer.device (`auto`: CUDA when present), like the Trainer-based objectives."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    return torch.device(pick_device(s.view.trainer.device))


def _check_method(s: Session, model: torch.nn.Module) -> None:
    if methods.callbacks(model, s.view.method):
        raise ConfigError(
            f"align.method: PPO runs its own loop, which does not drive the trainer callbacks that "
            f"`{s.view.method.type}` needs; use another method (e.g. lora or full)"
        )


def _reward_model(objective: PpoConfig) -> Path | None:
    if objective.reward_model is None:
        return None
    folder = Path(objective.reward_model).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"align.reward_model: '{objective.reward_model}' is not a model folder (no config.json); "
            "point it at a reward run's <run>/align/model"
        )
    return folder


def _prefixed(values: dict[str, float], prefix: str, suffix: str = "") -> dict[str, float]:
    return {f"{prefix}{k}{suffix}": v for k, v in values.items()}
