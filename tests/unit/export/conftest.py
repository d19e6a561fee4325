"""Fixtures: run directories shaped like the data + train stages leave them.

The builder lives in tests/unit/evaluate/tuned_run.py (shared with the evaluation tests); test folders
here are not packages, so that folder is put on sys.path to import it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))

from tuned_run import make_run

from lmtune.export.run import ExportResult, run
from lmtune.runtime.rundir import RunDir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> RunDir:
    """A LoRA run with a strongly perturbed adapter (lora_B ~ N(0, 0.5^2))."""
    return make_run(tmp_path_factory.mktemp("exportrun"), tiny_model_dir, scale=0.5)


@pytest.fixture(scope="module")
def exported(lora_run: RunDir) -> ExportResult:
    return run(lora_run)
