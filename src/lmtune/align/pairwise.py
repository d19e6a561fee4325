"""What the offline preference objectives share (DPO, ORPO, CPO/SimPO, KTO): their data kind, the
policy with its method, an optional reference, TRL's trainer with lmtune's arguments and callbacks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult, DataKind
    from lmtune.align.settings import AlignBase
    from lmtune.schema import RunConfig


def run_pairwise(
    cfg: RunConfig,
    objective: AlignBase,
    trainer_classes: tuple[type, type],
    objective_args: dict[str, Any],
    resume: bool,
    *,
    kind: DataKind = "preference",
    reference: bool = True,
) -> AlignResult:
    """Train with a TRL offline trainer (`trainer_classes` = (its config class, its trainer class)).

    With `reference`, the trainer gets the frozen reference model, which under an adapter method is the
    policy itself with its adapter disabled (`session.reference` / `session.drop_reference_adapter`);
    reference-free objectives (ORPO, CPO/SimPO) pass `reference=False`.
    """
    from lmtune.align import session

    config_cls, trainer_cls = trainer_classes
    started = time.perf_counter()
    s = session.open_session(cfg, objective, resume)
    tok = session.tokenizer(s)
    train, evals = session.datasets(s, tok, kind)
    model = session.policy(s)
    args = config_cls(
        **session.trainer_arguments(
            s, evals is not None, max_length=objective.data.max_length, **objective_args
        )
    )
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
    )
    session.drop_reference_adapter(model)
    return session.finish(s, trainer, guard, model, tok, started)
