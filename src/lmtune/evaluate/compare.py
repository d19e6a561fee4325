"""`lmtune evaluate --compare RUN_A RUN_B [...]`: the runs' evaluations side by side, refused (or, when
asked, flagged) when they were made under different settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.errors import LmtuneError
from lmtune.evaluate.settings import differing
from lmtune.runtime.records import EvalSummaryFile, MetricComparison


@dataclass(frozen=True)
class RunEval:
    """One run's evaluation as its eval folder holds it."""

    name: str
    folder: Path
    summary: dict[str, MetricComparison]
    settings: dict[str, Any] | None
    """`eval/settings.json` (None for an evaluation made before settings were recorded)."""

    @property
    def settings_hash(self) -> str | None:
        return None if self.settings is None else str(self.settings["settings_hash"])


def load_eval(run_dir: str | Path) -> RunEval:
    """The evaluation in `run_dir/eval`.

    Raises:
        LmtuneError: the run has not been evaluated.
    """
    folder = Path(run_dir) / "eval"
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise LmtuneError(
            f"{run_dir}: no evaluation (no eval/summary.json); run `lmtune evaluate {run_dir}` first"
        )
    summary = EvalSummaryFile.model_validate_json(summary_path.read_text(encoding="utf-8")).root
    settings_path = folder / "settings.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else None
    return RunEval(Path(run_dir).name or str(run_dir), folder, summary, settings)


def check_comparable(evals: list[RunEval], allow_different: bool) -> list[str]:
    """Notes on settings that differ from the first run's; raises unless `allow_different`.

    Raises:
        LmtuneError: the runs were evaluated under different (or unrecorded) settings.
    """
    first = evals[0]
    notes = []
    for other in evals[1:]:
        if first.settings is None or other.settings is None:
            missing = [e.name for e in (first, other) if e.settings is None]
            notes.append(
                f"{', '.join(missing)}: settings not recorded (evaluated before lmtune recorded them)"
            )
        elif first.settings_hash != other.settings_hash:
            keys = differing(first.settings["settings"], other.settings["settings"])
            notes.append(
                f"{other.name} was evaluated under other settings than {first.name} "
                f"({other.settings_hash} vs {first.settings_hash}): {', '.join(keys)} differ"
            )
    if notes and not allow_different:
        raise LmtuneError(
            "; ".join(notes) + ". Their numbers are not comparable; re-evaluate with the same settings "
            "(lmtune evaluate RUN --config ...), or pass --allow-different-settings to see them side "
            "by side, flagged"
        )
    return notes


def comparison_rows(evals: list[RunEval]) -> list[tuple[str, list[MetricComparison | None]]]:
    """(metric, each run's comparison or None) for every metric any run reports, in first-seen order."""
    names: list[str] = []
    for e in evals:
        names += [n for n in e.summary if n not in names]
    return [(n, [e.summary.get(n) for e in evals]) for n in names]
