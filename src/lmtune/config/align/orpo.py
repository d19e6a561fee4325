"""Config of the ORPO objective (implementation: lmtune.align.orpo)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmtune.config.align.base import AlignBase


class OrpoConfig(AlignBase):
    """ORPO: SFT and preference alignment in one pass, reference-free (one forward pass per answer, no
    reference) — for going straight from a base model to an aligned one."""

    type: Literal["orpo"] = "orpo"
    beta: float = Field(default=0.1, gt=0)
    """Weight of the odds-ratio term against the chosen answer's NLL (lambda in the paper)."""
