"""Stage 3-4 entry: supervised fine-tuning of one run config, from base model to saved weights.

Read `run` top to bottom: run directory + lineage -> tokenizer, model, data -> method -> preflight ->
transformers' Trainer (our collator and callbacks) -> final eval -> weights written atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmtune import methods
from lmtune.config.run import RunConfig
from lmtune.config.training import TrainerConfig
from lmtune.data.prepare import load_or_prepare, load_prepared
from lmtune.errors import ConfigError, TrainingError
from lmtune.runtime import chat_templates
from lmtune.runtime.device import pick_device
from lmtune.runtime.load import load_model, resolve_model_path
from lmtune.runtime.processing import load_processor, text_tokenizer
from lmtune.runtime.rundir import RunDir
from lmtune.train import checkpoints, distributed, moe, preflight
from lmtune.train.callbacks import (
    AlreadyFinished,
    FinishedRunStop,
    ManifestCallback,
    MetricsCallback,
    NonFiniteGuard,
)
from lmtune.train.collator import PadCollator
from lmtune.train.lineage import training_lineage
from lmtune.train.preflight import liger_on
from lmtune.train.run_metrics import drop_training_metrics_after, last_train_loss
from lmtune.train.weighted import WeightedLossTrainer

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

log = logging.getLogger(__name__)

MODEL_COLUMNS = ("input_ids", "labels", "position_ids", "weight")


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run produced."""

    run_dir: Path
    steps: int
    """Optimizer steps done in total (including those before a resume)."""
    train_loss: float | None
    """The last logged training loss."""
    eval_loss: float | None
    """Loss on the eval split after training (None when the split is empty)."""
    weights_path: Path
    """`adapter/` or `model/` in the run directory."""
    seconds: float


def run(cfg: RunConfig, resume: bool = False, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Fine-tune `cfg.model` with `cfg.method` on the prepared data; write weights, metrics, lineage.

    `callbacks` are extra transformers `TrainerCallback`s (for a caller's own logging or control); they
    run after lmtune's own.

    With `resume`, training continues from the newest complete checkpoint (exact: weights, optimizer,
    scheduler, RNG and data position); when there is none, it starts fresh and logs a warning. Without
    `resume`, a run directory that already holds a complete checkpoint is refused rather than overwritten.

    Raises:
        TrainingError: checkpoints exist and `resume` is off, or a non-finite loss/gradient/weight.
        PreflightError: the run cannot work (nothing trained, turns that never end, not enough memory).
        DataError, ModelLoadError, ConfigError: from the data and model stages.
    """
    # deferred: transformers only when this runs (keeps `import lmtune...` light)
    from transformers import set_seed

    started = time.perf_counter()
    state = distributed.process_state(cfg)
    rundir = RunDir.for_config(cfg)
    processor = load_processor(cfg.model, cfg.data.chat_template)
    tokenizer = text_tokenizer(processor)  # the text case: the processor is the tokenizer
    # Several processes (`--nproc`): the main one clears, records and prepares the run directory, then
    # the others read it (one process: just runs the block).
    with state.main_process_first():
        resume_from = resume_point(rundir, resume, clear=state.is_main_process)
        if state.is_main_process:
            rundir.write_config(cfg)
            resolved = resolve_model_path(cfg.model.path)
            rundir.update_lineage(**training_lineage(cfg.model.path, resolved, cfg.seed))
        # The others read what the main process prepared (their own file stamps may differ, e.g. on
        # another machine, and must not make them prepare again into the shared directory).
        data = (
            load_or_prepare(cfg.data, rundir, processor, seed=cfg.seed)
            if state.is_main_process
            else load_prepared(rundir)
        )
    shards = distributed.shards(state)
    sharded = distributed.weights_sharded()
    if sharded and not cfg.method.gathers_from_shards:
        raise ConfigError(
            f"method '{cfg.method.type}' saves its own format, which lmtune cannot gather from FSDP / ZeRO-3 "
            "shards: use DDP (`--nproc N` without a sharding config) or ZeRO-2"
        )
    base = load_model(cfg.model, device=pick_device(cfg.trainer.device))
    use_cache = base.config.use_cache
    set_seed(cfg.seed)  # the method's own initialisation (e.g. LoRA A) follows the run seed
    fit_chat_template(base, tokenizer, cfg)
    model = methods.prepare(base, cfg.method, chat_templates.token_ids(tokenizer, cfg.data.chat_template))
    report = preflight.check(
        model,
        tokenizer,
        data.train,
        cfg,
        shards=shards,
        local_processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    log.info(
        "preflight: %d rows, %d trained tokens, peak memory ~%.2f GiB of %.2f GiB (%s)",
        report.rows,
        report.trained_tokens,
        report.memory.total / preflight.GIB,
        report.available_bytes / preflight.GIB,
        report.available_source,
    )

    if report.gradient_checkpointing and cfg.trainer.gradient_checkpointing == "auto":
        log.info("gradient checkpointing on: the run does not fit in memory without it")
    trainer, guard = build_trainer(
        model, tokenizer, data.train, data.eval, cfg, rundir, report.gradient_checkpointing
    )
    if state.num_processes > 1:
        log.info(
            "training on %d processes (%s, backend %s): global batch %d rows",
            state.num_processes,
            trainer.accelerator.distributed_type.value,
            state.backend,
            state.num_processes * cfg.trainer.batch_size * cfg.trainer.grad_accum,
        )
    for callback in callbacks:
        trainer.add_callback(callback)
    try:
        eval_loss = train_then_evaluate(trainer, guard, resume_from).get("eval_loss")
    finally:
        base.config.use_cache = use_cache  # Trainer switched it off for training (`use_cache=False`)

    if sharded:
        weights = save_final_sharded(trainer, tokenizer, cfg, rundir)
    elif state.is_main_process:
        weights = save_final(model, tokenizer, cfg, rundir)
    else:
        weights, _ = _final_folder(cfg, rundir)
    state.wait_for_everyone()
    return TrainResult(
        run_dir=rundir.root,
        steps=trainer.state.global_step,
        train_loss=last_train_loss(rundir),
        eval_loss=float(eval_loss) if eval_loss is not None else None,
        weights_path=weights,
        seconds=time.perf_counter() - started,
    )


def train_then_evaluate(trainer: Trainer, guard: NonFiniteGuard, resume_from: Path | None) -> dict[str, Any]:
    """The training block every trainer-based stage shares (SFT and the TRL objectives): train, resuming
    from `resume_from` (a run already at its last step trains nothing), then evaluate on the held-out
    split; the non-finite guard is detached whatever happens. Returns the evaluation's metrics ({}
    without a held-out split)."""
    try:
        try:
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except AlreadyFinished:
            log.info("%s is the last step: nothing left to train", resume_from)
        return dict(trainer.evaluate()) if trainer.eval_dataset is not None else {}
    finally:
        guard.detach()


def fit_chat_template(base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig) -> None:
    """With `data.chat_template`: make `base` stop generating at the template's end of turn, and grow
    its embeddings to hold the tokens the template added to the tokenizer.

    Raises:
        ConfigError: tokens were added and the method is an adapter that cannot keep new rows
            (`methods.holds_new_tokens`).
    """
    if cfg.data.chat_template is None:
        return
    chat_templates.stop_at_end_of_turn(base, tokenizer)
    rows = chat_templates.embedding_rows(base)
    if len(tokenizer) <= rows:
        return
    if not methods.holds_new_tokens(cfg.method):
        added = tokenizer.convert_ids_to_tokens(list(range(rows, len(tokenizer))))
        raise ConfigError(
            f"data.chat_template '{cfg.data.chat_template}' adds {', '.join(map(str, added))} to the "
            f"vocabulary, and method '{cfg.method.type}' keeps no new embedding rows: use lora or a method "
            "that trains the whole model, or a template whose tokens the tokenizer has (mistral adds none)"
        )
    chat_templates.fit_embeddings(base, len(tokenizer))
    log.info("embeddings grown from %d to %d rows for the chat template's tokens", rows, len(tokenizer))


def build_trainer(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    evals: Dataset | None,
    cfg: RunConfig,
    rundir: RunDir,
    gradient_checkpointing: bool | None = None,
) -> tuple[Trainer, NonFiniteGuard]:
    """transformers' Trainer for `cfg.trainer`, with our collator, metrics, manifests and NaN guard.

    `gradient_checkpointing`: what the preflight decided (None: `trainer.gradient_checkpointing` is
    True). The guard's loss hook is attached to `model`; call `guard.detach()` when done.
    """
    # deferred: torch, transformers only when this runs (keeps `import lmtune...` light)
    import torch
    from transformers import Trainer, TrainingArguments

    has_eval = evals is not None and len(evals) > 0
    args = TrainingArguments(**training_arguments(cfg.trainer, cfg, rundir, has_eval, gradient_checkpointing))
    t = cfg.trainer
    groups = methods.param_groups(model, cfg.method, t.learning_rate)
    optimizer = torch.optim.AdamW(groups, lr=t.learning_rate, weight_decay=t.weight_decay) if groups else None
    guard, standard = standard_callbacks(rundir, t)
    trainer_cls = WeightedLossTrainer if "weight" in train.column_names else Trainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=_model_columns(train),
        eval_dataset=_model_columns(evals) if has_eval and evals is not None else None,
        data_collator=PadCollator(pad_id=_pad_id(tokenizer)),
        processing_class=tokenizer,
        callbacks=[
            # MoE models: first, so resumed experts are reloaded before FinishedRunStop and the router loss
            # is in the log before MetricsCallback writes it.
            *moe.callbacks(model, t.router_aux_loss_coef),
            *standard,
            *methods.callbacks(model, cfg.method),
        ],
        optimizers=(optimizer, None),
    )
    guard.attach(model)
    return trainer, guard


def training_arguments(
    t: TrainerConfig,
    cfg: RunConfig,
    rundir: RunDir,
    has_eval: bool,
    gradient_checkpointing: bool | None = None,
) -> dict[str, Any]:
    """Keyword arguments of transformers' `TrainingArguments` for the loop settings `t`, writing
    checkpoints under `rundir` (TRL's configs extend `TrainingArguments`, so alignment passes these too).
    `gradient_checkpointing`: the preflight's decision; None means only an explicit `true` turns it on."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    on_cuda = pick_device(cfg.trainer.device) == "cuda"
    checkpointing = (
        t.gradient_checkpointing is True if gradient_checkpointing is None else gradient_checkpointing
    )
    return {
        "output_dir": str(rundir.checkpoints),
        "max_steps": t.max_steps,
        "num_train_epochs": t.epochs,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "logging_steps": t.logging_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": None,  # ManifestCallback rotates, only after the new checkpoint is complete
        "eval_strategy": "steps" if has_eval and t.eval_steps else "no",
        "eval_steps": t.eval_steps,
        "activation_checkpointing": checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "use_cpu": not on_cuda,
        "bf16": on_cuda and torch.cuda.is_bf16_supported(),
        "use_liger_kernel": liger_on(cfg),
        "ddp_timeout": distributed.TIMEOUT_S,
        "torch_compile": t.compile,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "report_to": [],
        "disable_tqdm": False,
        "remove_unused_columns": False,
        # No KV cache in training: besides wasting memory, a cache makes transformers skip the per-example
        # causal mask it derives from packed rows' position ids (packed examples would attend to each other).
        "use_cache": False,
        # A non-finite loss is an error (NonFiniteGuard), not something to hide.
        "logging_nan_inf_filter": False,
    }


def standard_callbacks(rundir: RunDir, t: TrainerConfig) -> tuple[NonFiniteGuard, list[TrainerCallback]]:
    """lmtune's own callbacks for any transformers/TRL trainer writing into `rundir`: finished-run stop,
    metrics.jsonl, checkpoint manifests + rotation, and the non-finite guard (returned first as well:
    attach it to the model, and detach it when done)."""

    guard = NonFiniteGuard(rundir.checkpoints)
    return guard, [FinishedRunStop(), MetricsCallback(rundir), ManifestCallback(t.save_total_limit), guard]


def save_final(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, rundir: RunDir
) -> Path:
    """Write the trained weights + tokenizer to `adapter/` or `model/` via a temp folder and a rename,
    and remove the other kind's folder left by an earlier run. Returns the folder."""
    out, tmp = _final_folder(cfg, rundir)
    shutil.rmtree(tmp, ignore_errors=True)
    methods.save_weights(model, cfg.method, tmp)
    _publish(tmp, tokenizer, cfg, rundir)
    return out


def save_final_sharded(
    trainer: Trainer, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, rundir: RunDir
) -> Path:
    """`save_final` for weights spread over the processes (FSDP, ZeRO-3): every process takes part in
    transformers' `save_model`, which gathers the full weights and writes them from the main process
    (adapters as PEFT writes them, full models as `save_pretrained`); then the same rename."""
    out, tmp = _final_folder(cfg, rundir)
    main = trainer.accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if main:
        _publish(tmp, tokenizer, cfg, rundir)
    return out


def _final_folder(cfg: RunConfig, rundir: RunDir) -> tuple[Path, Path]:
    """`adapter/` or `model/` for the method, and the temp folder written before the rename."""
    out = rundir.adapter if methods.is_adapter(cfg.method) else rundir.model
    return out, out.with_name(f".{out.name}.tmp")


def _publish(tmp: Path, tokenizer: PreTrainedTokenizerBase, cfg: RunConfig, rundir: RunDir) -> None:
    """Add the tokenizer to `tmp`, rename it into place, and remove the other kind's folder."""
    out, _ = _final_folder(cfg, rundir)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    shutil.rmtree(rundir.model if out == rundir.adapter else rundir.adapter, ignore_errors=True)


def resume_point(rundir: RunDir, resume: bool, clear: bool = True) -> Path | None:
    """The checkpoint to resume from, after clearing what a (re)start would write over.

    With `clear` (the process that writes the run directory), drops checkpoint folders newer than the
    resume point (torn leftovers) and the training records of metrics.jsonl after it, so the resumed
    run's records follow on without duplicates.
    """
    latest = checkpoints.latest_complete(rundir.checkpoints)
    if latest is not None and not resume:
        raise TrainingError(
            f"{rundir.checkpoints} already holds the complete checkpoint {latest.name}: resume it "
            "(`lmtune train ... --resume`), or choose another run name"
        )
    if resume and latest is None:
        log.warning("no complete checkpoint in %s: starting training from the beginning", rundir.checkpoints)
    step = checkpoints.checkpoint_step(latest) if latest is not None else None
    if not clear:
        return latest
    checkpoints.remove_after(rundir.checkpoints, step if step is not None else -1)
    drop_training_metrics_after(rundir, step if step is not None else -1)
    if latest is not None:
        log.info("resuming from %s", latest)
    return latest


def _model_columns(dataset: Dataset) -> Dataset:
    return dataset.select_columns([c for c in MODEL_COLUMNS if c in dataset.column_names])


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TrainingError(f"tokenizer {tokenizer.name_or_path}: has neither a pad nor an eos token")
    return int(pad)
