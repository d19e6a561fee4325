"""Every file under configs/ must load: a shipped config that no longer validates is a failing test."""

from pathlib import Path

import pytest

from lmtune.config import loader
from lmtune.config.run import RunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    cfg = loader.load(RunConfig, path)
    assert cfg.name
    align_sources = cfg.align.data.sources if cfg.align is not None else []
    assert cfg.data.sources or align_sources, f"{path.name} has no data sources (SFT or alignment)"
