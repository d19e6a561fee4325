"""Odds Ratio Preference Optimisation on TRL's experimental `ORPOTrainer`: SFT on the chosen answer plus
an odds-ratio penalty on the rejected one, in one stage and without a reference model
(`lmtune.align.preference_losses.orpo_loss`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from lmtune.align.settings import AlignBase
from lmtune.align.trl_run import run_trl

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig


class OrpoConfig(AlignBase):
    """ORPO: SFT and preference alignment in one pass, reference-free (one forward pass per answer, no
    reference) — for going straight from a base model to an aligned one."""

    type: Literal["orpo"] = "orpo"
    beta: float = Field(default=0.1, gt=0)
    """Weight of the odds-ratio term against the chosen answer's NLL (lambda in the paper)."""


def run(cfg: RunConfig, objective: OrpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with ORPO on `objective.data` (preference pairs)."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return run_trl(
        cfg, objective, (ORPOConfig, ORPOTrainer), {"beta": objective.beta}, resume, reference=False
    )
