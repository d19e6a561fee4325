"""PPO's resumable state: `checkpoint-N/` holds the trained policy tensors, the value head, optimizer and
scheduler, RNG states, the step, the generation settings and the evaluation before training; it counts
once its manifest is written (`lmtune.train.checkpoints`).

Every random choice of a PPO step is seeded from (seed, step) (`lmtune.align.rollout`), so the restored
weights + optimizer + step are what a resumed run needs to continue the uninterrupted run's sequence;
the RNG states are restored as well for anything else that draws from torch's or Python's generators.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune.align.value_head import VALUE_HEAD_FILE, load_value_head, save_value_head
from lmtune.errors import TrainingError
from lmtune.runtime.rundir import atomic_write_text
from lmtune.train import checkpoints

if TYPE_CHECKING:
    from lmtune.align.ppo_loop import Loop

STATE_FILE = "ppo_state.json"
POLICY_FILE = "policy.safetensors"


def save_checkpoint(
    loop: Loop, folder: Path, step: int, eval_before: dict[str, float], keep: int | None
) -> None:
    """Write `checkpoint-N/`: the trained weights (`policy.safetensors`: every trainable tensor of the
    policy — the adapter, or the whole model), the value head, optimizer + scheduler, RNG states, the step,
    the generation settings and the pre-training evaluation; then its manifest (it counts from then on),
    then keep the newest `keep` checkpoints."""
    # deferred: safetensors, torch only when this runs (keeps `import lmtune...` light)
    import torch
    from safetensors.torch import save_file

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    trained = {n: p.detach().contiguous() for n, p in loop.model.named_parameters() if p.requires_grad}
    save_file(trained, str(folder / POLICY_FILE))
    save_value_head(loop.head, folder / VALUE_HEAD_FILE)
    torch.save(loop.optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(loop.scheduler.state_dict(), folder / "scheduler.pt")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"cuda:{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    torch.save(rng, folder / "rng_state.pt")
    state = {
        "step": step,
        "sampling": loop.sampling.as_dict(),
        "eval_before": eval_before,
        "python_random": _jsonable(random.getstate()),
    }
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=2))
    checkpoints.write_manifest(folder, step)
    checkpoints.rotate(folder.parent, keep)


def load_checkpoint(loop: Loop, folder: Path) -> tuple[int, dict[str, float]]:
    """Restore what `save_checkpoint` wrote into the loop; returns (step, the pre-training evaluation).

    Raises:
        TrainingError: the checkpoint's trained tensors do not match the policy, or it was sampled with
            other generation settings (a resumed run would not continue the same sequence).
    """
    # deferred: safetensors, torch only when this runs (keeps `import lmtune...` light)
    import torch
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    if state["sampling"] != loop.sampling.as_dict():
        raise TrainingError(
            f"{folder}: sampled with {state['sampling']}, but the config now says {loop.sampling.as_dict()}; "
            "resume with the same generation settings and seed, or start a new run"
        )
    saved = load_file(str(folder / POLICY_FILE))
    params = {n: p for n, p in loop.model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys():
        raise TrainingError(f"{folder}: its trained tensors do not match the policy's (another method?)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    load_value_head(loop.head, folder / VALUE_HEAD_FILE)
    loop.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    loop.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    rng = torch.load(folder / "rng_state.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    for i in range(torch.cuda.device_count()):
        if f"cuda:{i}" in rng:
            torch.cuda.set_rng_state(rng[f"cuda:{i}"], i)
    random.setstate(_python_state(state["python_random"]))
    return int(state["step"]), dict(state["eval_before"])


def _jsonable(state: Any) -> Any:
    return [_jsonable(x) for x in state] if isinstance(state, tuple | list) else state


def _python_state(state: Any) -> Any:
    return tuple(_python_state(x) for x in state) if isinstance(state, list) else state
