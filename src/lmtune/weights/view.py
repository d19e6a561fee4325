"""Where alignment starts, and how later stages see an aligned run.

Alignment trains on top of the run's SFT weights when there are any: they are merged into the base once
and written as a standard model folder under `align/start/`, which is then the alignment's base model
(and, with an adapter method, its reference model: the adapter disabled). The aligned run's final
weights live in `align/adapter/` or `align/model/`; `final_view` hands evaluate/export a config whose
base is that start folder and whose method is the alignment's, so they work unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lmtune import methods
from lmtune.errors import ConfigError
from lmtune.runtime.load import resolve_model_path
from lmtune.runtime.rundir import RunDir, atomic_write_text
from lmtune.weights.load import load_weights_tokenizer
from lmtune.weights.save import save_folder

if TYPE_CHECKING:
    from lmtune.config.align.base import AlignBase
    from lmtune.config.run import RunConfig

log = logging.getLogger(__name__)

ALIGN_FOLDER = "align"
START_FOLDER = "start"
SOURCE_FILE = "lmtune_start.json"
"""Written in `align/start/`: which SFT weights it was merged from (so a stale folder is rebuilt)."""


def align_dir(rundir: RunDir) -> RunDir:
    """The alignment's own run directory inside the run (`<run>/align/`): its checkpoints, metrics,
    lineage and final weights, laid out like any run directory."""
    return RunDir(rundir.root / ALIGN_FOLDER)


def sft_weights(rundir: RunDir) -> Path | None:
    """The run's SFT weights folder, or None when SFT has not run."""
    weights = rundir.final_weights()
    return weights if weights.is_dir() and any(weights.iterdir()) else None


def start_model(cfg: RunConfig, objective: AlignBase, rundir: RunDir) -> str:
    """The model path alignment starts from (`objective.start_from`), merging the SFT weights into
    `align/start/` first when they are used (once: kept while the SFT weights are unchanged).

    Raises:
        ConfigError: `start_from: sft` without SFT weights, or SFT weights whose method cannot merge.
    """
    weights = sft_weights(rundir)
    if objective.start_from == "base" or (objective.start_from == "auto" and weights is None):
        return cfg.model.path
    if weights is None:
        raise ConfigError(
            f"align.start_from: sft, but {rundir.root} has no SFT weights (adapter/ or model/); run the "
            "`train` stage first or set align.start_from: base"
        )
    if not methods.is_adapter(cfg.method):
        return str(weights)  # full weights: already a standard model folder
    if not methods.mergeable(cfg.method):
        raise ConfigError(
            f"align.start_from: the SFT method '{cfg.method.type}' cannot be merged into the base, so "
            "alignment cannot start from it; use a mergeable method for SFT or set align.start_from: base"
        )
    out = align_dir(rundir).root / START_FOLDER
    stamp = {"sft_weights": str(weights), "stamp": _stamp(weights)}
    marker = out / SOURCE_FILE
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return str(out)
    _merge_sft(cfg, weights, out)
    atomic_write_text(marker, json.dumps(stamp, indent=2))
    return str(out)


def final_view(rundir: RunDir) -> tuple[RunConfig, Path]:
    """(config, weights) that evaluate and export should use: the aligned policy when the run has
    one (base = the alignment's start, method = the alignment's method), else the SFT weights."""
    cfg = rundir.load_config()
    objective = cfg.align
    if objective is None or not produces_policy(objective.type):
        return cfg, rundir.final_weights()
    aligned = align_dir(rundir)
    weights = aligned.final_weights()
    if not weights.is_dir():
        return cfg, rundir.final_weights()
    start = json.loads((aligned.root / "start.json").read_text())["model_path"]
    view = cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"path": start}), "method": objective.method}
    )
    return view, weights


def produces_policy(objective_type: str) -> bool:
    """Whether an objective trains the policy (everything but the reward model)."""
    return objective_type != "reward"


def record_start(aligned: RunDir, model_path: str) -> None:
    """Remember which model the alignment started from (read by `final_view`)."""
    aligned.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(aligned.root / "start.json", json.dumps({"model_path": model_path}, indent=2))


def _stamp(weights: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights.iterdir() if p.is_file())


def _merge_sft(cfg: RunConfig, weights: Path, out: Path) -> None:
    log.info("merging the SFT weights %s into %s (alignment's start)", weights, out)
    model = methods.load_for_inference(
        resolve_model_path(cfg.model.path), weights, cfg.method, cfg.model.dtype
    )
    save_folder(methods.merge(model, cfg.method), load_weights_tokenizer(weights, cfg.model), out)
