"""What training reads back from a run's metrics.jsonl, through the typed records
(`lmtune.runtime.records`): the loss curve, and the clean-up a resumed run makes."""

from __future__ import annotations

from lmtune.runtime.records import EvalLog, TrainLog, TrainSummaryLog, metrics_line
from lmtune.runtime.rundir import RunDir, atomic_write_text

TRAINING_RECORDS = (TrainLog, EvalLog, TrainSummaryLog)
"""The metrics.jsonl records a training stage writes (see `callbacks.MetricsCallback`)."""


def drop_training_metrics_after(rundir: RunDir, step: int) -> None:
    """Remove the training records logged after `step` (a resumed run logs them again)."""
    if not rundir.metrics.is_file():
        return
    kept = [r for r in rundir.read_metrics() if not (isinstance(r, TRAINING_RECORDS) and r.step > step)]
    atomic_write_text(rundir.metrics, "".join(f"{metrics_line(r)}\n" for r in kept))


def train_losses(rundir: RunDir) -> dict[int, float]:
    """Step -> training loss of every `train` record in metrics.jsonl (it spans resumes)."""
    return {
        r.step: float(r.loss) for r in rundir.read_metrics() if isinstance(r, TrainLog) and r.loss is not None
    }


def last_train_loss(rundir: RunDir) -> float | None:
    """The loss of the last `train` record in metrics.jsonl."""
    losses = train_losses(rundir)
    return losses[max(losses)] if losses else None
