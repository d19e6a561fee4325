"""Kahneman-Tversky Optimisation on TRL's `KTOTrainer`: alignment from single answers labelled good or
bad (no pairs), against a reference (`lmtune.align.preference_losses.kto_loss`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.settings import AlignBase
from lmtune.align.trl_run import run_trl

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class KtoConfig(AlignBase):
    """KTO on `kto`-format data (prompt, completion, label): for thumbs-up/down feedback that never came
    in pairs. Costs like DPO (policy + reference passes, plus a KL estimate on mismatched pairs)."""

    type: Literal["kto"] = "kto"
    beta: float = Field(default=0.1, gt=0)
    """Strength of the pull towards the reference."""
    desirable_weight: float = Field(default=1.0, gt=0)
    """Weight of the desirable (label true) examples' losses."""
    undesirable_weight: float = Field(default=1.0, gt=0)
    """Weight of the undesirable (label false) examples' losses; raise it when bad examples are rarer."""


def run(cfg: RunConfig, objective: KtoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with KTO on `objective.data` (labelled completions)."""
    from trl import KTOConfig as TrlKtoConfig
    from trl import KTOTrainer

    args = {
        "beta": objective.beta,
        "desirable_weight": objective.desirable_weight,
        "undesirable_weight": objective.undesirable_weight,
    }
    return run_trl(cfg, objective, (TrlKtoConfig, KTOTrainer), args, resume, kind="kto")
