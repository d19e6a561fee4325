"""CLI verbs: exit codes, one-line errors (no traceback), resolved config output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmtune.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_config_show_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(ROOT / "configs/sft_lora.yaml"), "method.rank=32"]) == 0
    out = capsys.readouterr().out
    assert "rank: 32" in out
    assert "learning_rate: 0.0005" in out
    assert "trust_remote_code: false" in out


def test_config_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) >= {"model", "data", "method", "trainer", "serve"}


def test_misspelled_key_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", str(ROOT / "configs/sft_lora.yaml"), "trainer.learnig_rate=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("unknown config key 'trainer.learnig_rate': did you mean 'trainer.learning_rate'?")
    assert len(err.splitlines()) == 1


def test_env_reports_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["libraries"]["torch"].startswith("2.13")
    assert info["hardware"]["cpu_count"] >= 1
    assert "ram_available_gb" in info["hardware"]


def test_user_error_has_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    """The installed entry point: a bad key fails before any model loads, exit 2, no traceback."""
    res = subprocess.run(
        [sys.executable, "-m", "lmtune.cli", "train", str(ROOT / "configs/quickstart.yaml"), "method.rnak=3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "unknown config key 'method.rnak': did you mean 'method.rank'?" in res.stderr
