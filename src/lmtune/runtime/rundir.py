"""The run directory: the contract between stages (see docs/architecture.md).

runs/<name>/
  config.yaml  lineage.json  metrics.jsonl
  data/{train,eval}/ (Arrow)  data/rejects.jsonl  data/stats.json
  checkpoints/checkpoint-N/ (+ manifest.json once complete)
  adapter/ | model/     final weights
  eval/                 base.json, tuned.json, summary.json
  export/merged/        export/export_check.json
  monitor/requests.sqlite
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmtune.config import loader
from lmtune.config.run import RunConfig
from lmtune.errors import ConfigError
from lmtune.runtime.records import MetricsRecord, metrics_line, metrics_record, read_metrics


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def for_config(cls, cfg: RunConfig) -> RunDir:
        return cls(Path(cfg.output_dir) / cfg.name)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lineage(self) -> Path:
        return self.root / "lineage.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def rejects(self) -> Path:
        return self.data / "rejects.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def merged(self) -> Path:
        return self.export / "merged"

    @property
    def monitor(self) -> Path:
        return self.root / "monitor"

    def final_weights(self) -> Path:
        """The trained weights folder: `adapter/` for adapter methods, `model/` for full training."""
        return self.adapter if self.adapter.is_dir() else self.model

    def write_config(self, cfg: RunConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, loader.dump(cfg))

    def load_config(self) -> RunConfig:
        if not self.config.is_file():
            raise ConfigError(f"{self.root}: not a run directory (no config.yaml)")
        return loader.load(RunConfig, self.config)

    def update_lineage(self, **fields: Any) -> None:
        """Merge `fields` into lineage.json (stages add what they know)."""
        current = json.loads(self.lineage.read_text()) if self.lineage.is_file() else {}
        current.update(fields)
        atomic_write_text(self.lineage, json.dumps(current, indent=2, sort_keys=True, default=str))

    def append_metrics(self, record: MetricsRecord | dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (a dict is validated as a `MetricsRecord` first)."""
        typed = metrics_record(record) if isinstance(record, dict) else record
        self.root.mkdir(parents=True, exist_ok=True)
        with self.metrics.open("a", encoding="utf-8") as f:
            f.write(metrics_line(typed) + "\n")

    def read_metrics(self) -> list[MetricsRecord]:
        """Every record of metrics.jsonl, typed (none before the first is written)."""
        return list(read_metrics(self.metrics))


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
