"""Running an objective on one of TRL's trainers (every objective but PPO): the policy with its method,
an optional reference, the objective's data, lmtune's arguments and callbacks, train + save."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lmtune.align import session

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult, DataKind
    from lmtune.config.align.base import AlignBase
    from lmtune.config.run import RunConfig


def run_trl(
    cfg: RunConfig,
    objective: AlignBase,
    trainer_classes: tuple[type, type],
    objective_args: dict[str, Any],
    resume: bool,
    *,
    kind: DataKind = "preference",
    reference: bool = True,
    trainer_kwargs: dict[str, Any] | None = None,
) -> AlignResult:
    """Train with a TRL trainer (`trainer_classes` = (its config class, its trainer class)).

    Args:
        objective_args: the objective's own fields of TRL's config (beta, loss_type, ...).
        kind: the data the objective reads: `preference`, `kto`, or `prompt` (sampling objectives: the
            tokenizer then pads on the left for generation, and `max_length` does not apply).
        reference: pass the frozen reference model, which under an adapter method is the policy itself
            with its adapter disabled (`session.reference` / `session.drop_reference_adapter`);
            reference-free objectives (ORPO, CPO/SimPO, GRPO/RLOO with their own KL handling) pass False.
        trainer_kwargs: more keyword arguments of the trainer (e.g. GRPO's `reward_funcs`).
    """

    config_cls, trainer_cls = trainer_classes
    started = time.perf_counter()
    s = session.open_session(cfg, objective, resume)
    tok = session.tokenizer(s)
    if kind == "prompt":
        tok.padding_side = "left"  # generation pads prompts on the left
    else:
        objective_args = {"max_length": objective.data.max_length, **objective_args}
    train, evals = session.datasets(s, tok, kind)
    model = session.policy(s)
    args = config_cls(**session.trainer_arguments(s, evals is not None, **objective_args))
    guard, callbacks = session.callbacks(s, model)
    extra = {"ref_model": session.reference(s, model)} if reference else {}
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tok,
        callbacks=callbacks,
        **extra,
        **(trainer_kwargs or {}),
    )
    session.drop_reference_adapter(model)
    return session.finish(s, trainer, guard, model, tok, started)
