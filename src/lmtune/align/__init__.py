"""Stage 4b, alignment: each objective is a module with a tagged config (fields shared through
`settings.AlignBase`) and a `run(cfg, objective, resume)`; this package joins the configs in one
discriminated union and dispatches through one exhaustive `match` (`run`).

Adding an objective = a new module, an entry in `AnyObjective` and a case in `run`. Objectives compose
TRL's trainers where TRL has them; PPO is lmtune's own. Losses are pure functions in
`preference_losses` / `policy_losses`, tested against closed forms and against TRL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, assert_never

from pydantic import Field

from lmtune.align.cpo import CpoConfig
from lmtune.align.dpo import DpoConfig
from lmtune.align.grpo import GrpoConfig
from lmtune.align.kto import KtoConfig
from lmtune.align.orpo import OrpoConfig
from lmtune.align.ppo import PpoConfig
from lmtune.align.reward import RewardConfig
from lmtune.align.rloo import RlooConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.schema import RunConfig

AnyObjective = (
    DpoConfig | KtoConfig | OrpoConfig | CpoConfig | RewardConfig | GrpoConfig | RlooConfig | PpoConfig
)
AlignConfig = Annotated[AnyObjective, Field(discriminator="type")]


def run(cfg: RunConfig, resume: bool = False) -> AlignResult:
    """Run the alignment objective of `cfg` (`cfg.align`) into `<run>/align/`.

    Raises:
        ConfigError: the config has no `align` section, or its start model is not available.
    """
    from lmtune.errors import ConfigError

    objective = cfg.align
    match objective:
        case None:
            raise ConfigError("the config has no `align` section: nothing to align")
        case DpoConfig():
            from lmtune.align import dpo

            return dpo.run(cfg, objective, resume)
        case KtoConfig():
            from lmtune.align import kto

            return kto.run(cfg, objective, resume)
        case OrpoConfig():
            from lmtune.align import orpo

            return orpo.run(cfg, objective, resume)
        case CpoConfig():
            from lmtune.align import cpo

            return cpo.run(cfg, objective, resume)
        case RewardConfig():
            from lmtune.align import reward

            return reward.run(cfg, objective, resume)
        case GrpoConfig():
            from lmtune.align import grpo

            return grpo.run(cfg, objective, resume)
        case RlooConfig():
            from lmtune.align import rloo

            return rloo.run(cfg, objective, resume)
        case PpoConfig():
            from lmtune.align import ppo

            return ppo.run(cfg, objective, resume)
        case _:
            assert_never(objective)
