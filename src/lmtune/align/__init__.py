"""Stage 4b, alignment: each objective is a module with a `run(cfg, objective, resume)`; its config lives
in `lmtune.config.align` (fields shared through `AlignBase`), and this package dispatches each config to
its module through one exhaustive `match` (`run`).

Adding an objective = a config module in `lmtune.config.align`, an entry in `AnyObjective`, a module here
and a case in `run`; the alignment contract suite (tests/contracts) then covers it. Objectives compose
TRL's trainers where TRL has them (their losses are TRL's); PPO is lmtune's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from lmtune.align import cpo, dpo, grpo, kto, orpo, ppo, reward, rloo
from lmtune.config.align.cpo import CpoConfig
from lmtune.config.align.dpo import DpoConfig
from lmtune.config.align.grpo import GrpoConfig
from lmtune.config.align.kto import KtoConfig
from lmtune.config.align.orpo import OrpoConfig
from lmtune.config.align.ppo import PpoConfig
from lmtune.config.align.reward import RewardConfig
from lmtune.config.align.rloo import RlooConfig
from lmtune.errors import ConfigError

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, resume: bool = False) -> AlignResult:
    """Run the alignment objective of `cfg` (`cfg.align`) into `<run>/align/`.

    Raises:
        ConfigError: the config has no `align` section, or its start model is not available.
    """
    objective = cfg.align
    match objective:
        case None:
            raise ConfigError("the config has no `align` section: nothing to align")
        case DpoConfig():
            return dpo.run(cfg, objective, resume)
        case KtoConfig():
            return kto.run(cfg, objective, resume)
        case OrpoConfig():
            return orpo.run(cfg, objective, resume)
        case CpoConfig():
            return cpo.run(cfg, objective, resume)
        case RewardConfig():
            return reward.run(cfg, objective, resume)
        case GrpoConfig():
            return grpo.run(cfg, objective, resume)
        case RlooConfig():
            return rloo.run(cfg, objective, resume)
        case PpoConfig():
            return ppo.run(cfg, objective, resume)
        case _:
            assert_never(objective)
