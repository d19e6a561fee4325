"""Direct Preference Optimisation and its loss variants, on TRL's `DPOTrainer`.

The loss is TRL's own (`DPOTrainer`, `loss_type=[sigmoid | ipo | hinge | robust]`); lmtune passes the
objective's beta, loss_type and label_smoothing. `tests/unit/align/test_losses_vs_trl.py` checks it
against the closed forms of docs/alignment.md on batches from lmtune's data path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmtune.align.trl_run import run_trl
from lmtune.config.align.dpo import DpoConfig

if TYPE_CHECKING:
    from lmtune.align.session import AlignResult
    from lmtune.config.run import RunConfig


def run(cfg: RunConfig, objective: DpoConfig, resume: bool = False) -> AlignResult:
    """Train the policy with DPO on `objective.data` (preference pairs); see `lmtune.align.trl_run`."""
    # deferred: trl only when this runs (keeps `import lmtune...` light)
    from trl import DPOConfig as TrlDpoConfig
    from trl import DPOTrainer

    args = {
        "beta": objective.beta,
        "loss_type": [objective.loss_type],
        "label_smoothing": objective.label_smoothing,
    }
    return run_trl(cfg, objective, (TrlDpoConfig, DPOTrainer), args, resume)
