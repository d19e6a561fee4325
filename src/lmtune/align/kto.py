"""Kahneman-Tversky Optimisation on TRL's `KTOTrainer`: alignment from single answers labelled good or
bad (no pairs), against a reference. The loss is TRL's own (`KTOTrainer`, `loss_type="kto"`, its
default), checked against the closed form in `tests/unit/align/test_losses_vs_trl.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.align.trl_run import run_trl
from lmtune.config.align.kto import KtoConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: KtoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with KTO on `objective.data` (labelled completions)."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import KTOConfig as TrlKtoConfig
    from trl import KTOTrainer

    args = {
        "beta": objective.beta,
        "desirable_weight": objective.desirable_weight,
        "undesirable_weight": objective.undesirable_weight,
    }
    return run_trl(cfg, objective, (TrlKtoConfig, KTOTrainer), args, resume, kind="kto")
