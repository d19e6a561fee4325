"""Every file under configs/ must load: a shipped config that no longer validates is a failing test."""

from pathlib import Path

import pytest

from lmtune.config import loader
from lmtune.config.run import RunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("*.yaml"))
ENDPOINT_ONLY = {"eval_endpoint.yaml"}
"""Configs that hold only an `evaluate` section, for `lmtune evaluate --endpoint URL --config FILE`."""


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    cfg = loader.load(RunConfig, path)
    assert cfg.name
    if path.name in ENDPOINT_ONLY:  # every suite must be one an endpoint can run
        from lmtune.evaluate.endpoint import unsupported

        assert [s.type for s in cfg.evaluate.all_suites() if unsupported(s)] == []
        return
    align_sources = cfg.align.data.sources if cfg.align is not None else []
    assert cfg.data.sources or align_sources, f"{path.name} has no data sources (SFT or alignment)"
