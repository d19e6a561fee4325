"""Every alignment objective's config (one module each) joined in one discriminated union. Pure pydantic:
`lmtune.align` dispatches each config to its implementation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from lmtune.config.align.cpo import CpoConfig
from lmtune.config.align.dpo import DpoConfig
from lmtune.config.align.grpo import GrpoConfig
from lmtune.config.align.kto import KtoConfig
from lmtune.config.align.orpo import OrpoConfig
from lmtune.config.align.ppo import PpoConfig
from lmtune.config.align.reward import RewardConfig
from lmtune.config.align.rloo import RlooConfig

AnyObjective = (
    DpoConfig | KtoConfig | OrpoConfig | CpoConfig | RewardConfig | GrpoConfig | RlooConfig | PpoConfig
)
AlignConfig = Annotated[AnyObjective, Field(discriminator="type")]
