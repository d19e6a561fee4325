"""Direct Preference Optimisation and its loss variants, on TRL's `DPOTrainer`.

The loss math is `lmtune.align.preference_losses.dpo_loss` (tested equal to TRL's within 1e-6).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.settings import AlignBase

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class DpoConfig(AlignBase):
    """DPO on preference pairs: raise the policy's log-ratio (to the reference) of the chosen answer over
    the rejected one. For turning pairs into behaviour without a reward model; costs two forward passes
    per pair (policy and reference), the reference with the adapter disabled under an adapter method."""

    type: Literal["dpo"] = "dpo"
    beta: float = Field(default=0.1, gt=0)
    """Strength of the pull towards the reference (IPO: its regularisation parameter)."""
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """`sigmoid` (DPO), `ipo` (squared loss to 1/(2 beta)), `hinge` (SLiC), `robust` (label-noise robust)."""
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    """Probability that a preference label is flipped (sigmoid and robust losses)."""


def run(cfg: RunConfig, objective: DpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with DPO on `objective.data` (preference pairs); see `lmtune.align.session`."""
    from trl import DPOConfig as TrlDpoConfig
    from trl import DPOTrainer

    from lmtune.align import session

    started = time.perf_counter()
    s = session.open_session(cfg, objective, resume)
    tok = session.tokenizer(s)
    train, evals = session.datasets(s, tok, "preference")
    model = session.policy(s)
    args = TrlDpoConfig(
        **session.trainer_arguments(
            s,
            evals is not None,
            beta=objective.beta,
            loss_type=[objective.loss_type],
            label_smoothing=objective.label_smoothing,
            max_length=objective.data.max_length,
        )
    )
    guard, callbacks = session.callbacks(s, model)
    trainer = DPOTrainer(
        model=model,  # type: ignore[arg-type]
        ref_model=session.reference(s, model),
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tok,
        callbacks=callbacks,
    )
    session.drop_reference_adapter(model)
    return session.finish(s, trainer, guard, model, tok, started)
