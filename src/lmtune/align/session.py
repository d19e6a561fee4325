"""What every alignment objective does around its trainer: the `<run>/align/` directory, the start
model, the policy with its method, the data, TRL's arguments, lmtune's callbacks, train + save.

An objective's `run` reads: `open_session` -> load the policy (`policy`) and data (`datasets`) -> build
its TRL trainer with `trainer_arguments` and `callbacks` -> `finish`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmtune import methods
from lmtune.data.alignment.prepare import prepare_align, split_align
from lmtune.data.records import RejectLog, open_rejects
from lmtune.runtime.device import pick_device
from lmtune.runtime.load import load_model, load_tokenizer, resolve_model_path
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.train import sft
from lmtune.train.lineage import training_lineage
from lmtune.train.run_metrics import last_train_loss
from lmtune.weights.view import align_dir, record_start, start_model

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

    from lmtune.config.align.base import AlignBase
    from lmtune.config.run import RunConfig
    from lmtune.train.callbacks import NonFiniteGuard

log = logging.getLogger(__name__)

DataKind = Literal["preference", "kto", "prompt"]


@dataclass(frozen=True)
class Session:
    """One alignment run: the run's config, the objective, and `view` — the run config as the
    alignment sees it (base = the start model, method and trainer = the objective's)."""

    cfg: RunConfig
    objective: AlignBase
    view: RunConfig
    rundir: RunDir
    """The whole run."""
    aligned: RunDir
    """`<run>/align/`: the alignment's checkpoints, metrics.jsonl, lineage.json and final weights."""
    resume_from: Path | None


@dataclass(frozen=True)
class AlignResult:
    """What a finished alignment produced."""

    run_dir: Path
    steps: int
    train_loss: float | None
    metrics: dict[str, float]
    """The trainer's final evaluation on the held-out split (e.g. eval_rewards/accuracies for DPO)."""
    weights_path: Path
    seconds: float


def open_session(cfg: RunConfig, objective: AlignBase, resume: bool) -> Session:
    """Prepare `<run>/align/` (refusing to overwrite a finished checkpoint unless resuming) and the
    start model (merging the SFT weights first when alignment starts from them)."""

    rundir = RunDir.for_config(cfg)
    aligned = align_dir(rundir)
    resume_from = sft.resume_point(aligned, resume)
    start = start_model(cfg, objective, rundir)
    record_start(aligned, start)
    view = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"path": start}),
            "method": objective.method,
            "trainer": objective.trainer,
        }
    )
    rundir.write_config(cfg)  # so `lmtune evaluate/export <run>` work after a lone `lmtune align`
    aligned.write_config(cfg)
    lineage = training_lineage(start, resolve_model_path(start), cfg.seed)
    aligned.update_lineage(**lineage, objective=objective.type, start_model=start)
    return Session(cfg, objective, view, rundir, aligned, resume_from)


def tokenizer(session: Session) -> PreTrainedTokenizerBase:
    """The start model's tokenizer (pad = eos when it has none)."""

    return load_tokenizer(session.view.model)


def policy(session: Session) -> torch.nn.Module:
    """The start model with the objective's method applied (seeded, like SFT)."""
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import set_seed

    base = load_model(session.view.model, device=pick_device(session.cfg.trainer.device))
    set_seed(session.cfg.seed)
    return methods.prepare(base, session.view.method)


def reference(session: Session, model: torch.nn.Module) -> PreTrainedModel | None:
    """The frozen reference model TRL needs, or None when it can use the policy with its adapter
    disabled (a PEFT adapter): then no second copy of the model is loaded."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return None
    ref = load_model(session.view.model, device=pick_device(session.cfg.trainer.device)).eval()
    ref.requires_grad_(False)
    return ref


def drop_reference_adapter(model: torch.nn.Module) -> None:
    """Remove the frozen copy of the adapter that TRL's preference trainers add as the reference when
    handed a PEFT model: without it they compute reference log-probs with the adapter disabled (the
    start model itself), and the saved adapter is the trained one only."""
    # deferred: peft only when this runs (keeps `import lmtune...` light)
    from peft import PeftModel

    if isinstance(model, PeftModel) and "ref" in model.peft_config:
        model.delete_adapter("ref")
        model.set_adapter("default")


def datasets(
    session: Session, tok: PreTrainedTokenizerBase, kind: DataKind
) -> tuple[Dataset, Dataset | None]:
    """The objective's (train, eval) datasets in TRL's conversational layout; rejects are written to
    `<run>/align/data/rejects.jsonl` and counts to `<run>/align/data/stats.json`."""

    data = session.objective.data
    sink = open_rejects(session.aligned.rejects)
    try:
        rejects = RejectLog(sink)
        prepared = prepare_align(
            data.sources,
            kind,
            tok,
            max_prompt_length=data.max_prompt_length,
            system_prompt=data.system_prompt,
            rejects=rejects,
            max_length=data.max_length,
        )
    finally:
        if sink is not None:
            sink.close()
    train, evals = split_align(prepared.dataset, data.eval_size, session.cfg.seed)
    stats = {**prepared.stats(), "train": len(train), "eval": len(evals)}
    atomic_write_text(session.aligned.data / "stats.json", json.dumps(stats, indent=2, default=str))
    log.info("alignment data: %d train, %d eval, %d rejected", stats["train"], stats["eval"], rejects.count)
    return train, evals if len(evals) else None


def trainer_arguments(session: Session, has_eval: bool, **objective_args: Any) -> dict[str, Any]:
    """Keyword arguments for a TRL config: lmtune's loop settings (as SFT) plus the objective's own."""
    args = sft.training_arguments(session.view.trainer, session.view, session.aligned, has_eval)
    # Liger patches a causal LM's forward (fused loss over lm_head): the reward model has no lm_head and
    # TRL's objectives switch the fused loss off themselves, so alignment leaves the model unpatched.
    args["use_liger_kernel"] = False
    args.update(objective_args)
    return args


def callbacks(session: Session, model: torch.nn.Module) -> tuple[NonFiniteGuard, list[TrainerCallback]]:
    """lmtune's callbacks (metrics, manifests, finished-run stop, non-finite guard) and the method's."""
    guard, standard = sft.standard_callbacks(session.aligned, session.view.trainer)
    return guard, [*standard, *methods.callbacks(model, session.view.method)]


def finish(
    session: Session,
    trainer: Trainer,
    guard: NonFiniteGuard,
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    started: float,
    save: bool = True,
) -> AlignResult:
    """Evaluate on the held-out split (when `eval_before` is on and the run starts fresh: the metrics
    come back with a `_before` suffix), train (resuming when asked), evaluate again, and save the final
    weights into `<run>/align/adapter/` or `model/` (unless `save` is off: the objective saves them)."""

    before: dict[str, float] = {}
    if session.objective.eval_before and trainer.eval_dataset is not None and session.resume_from is None:
        before = _numbers(trainer.evaluate())
        session.aligned.append_metrics({"kind": "align_eval_before", "step": 0, **before})
    guard.attach(model)
    final = _numbers(sft.train_then_evaluate(trainer, guard, session.resume_from))
    session.aligned.append_metrics({"kind": "align_eval", "step": trainer.state.global_step, **final})
    final |= {f"{k}_before": v for k, v in before.items() if k.startswith("eval_") and "runtime" not in k}
    weights = sft.save_final(model, tok, session.view, session.aligned) if save else session.aligned.model
    return AlignResult(
        run_dir=session.aligned.root,
        steps=trainer.state.global_step,
        train_loss=last_train_loss(session.aligned),
        metrics=final,
        weights_path=weights,
        seconds=time.perf_counter() - started,
    )


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
