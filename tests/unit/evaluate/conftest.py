"""Fixtures: run directories shaped like the data + train stages leave them (see tuned_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tuned_run import make_run

from lmtune.runtime.rundir import RunDir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> RunDir:
    """A LoRA run with a strongly perturbed adapter and a GSM8K-style eval split."""
    return make_run(tmp_path_factory.mktemp("evalrun"), tiny_model_dir, scale=0.5)
