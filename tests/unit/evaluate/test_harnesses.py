"""The harness recipes of docs/harnesses.md, run as written against `lmtune serve` of the tiny model:
lm-evaluation-harness's `local-chat-completions` model on `configs/harness/lm_eval/lmtune_qa.yaml`, and
Inspect's OpenAI-compatible provider on `configs/harness/inspect_task.py`, each on the local task file
`configs/harness/qa.jsonl`, offline. Each harness's answers must be the model's own greedy answers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmtune.config.deploy import ServeConfig
from lmtune.runtime.generation import greedy_generate, render_prompt
from lmtune.runtime.stops import stop_token_ids
from lmtune.serve.run import background_server

ROOT = Path(__file__).resolve().parents[3]
QA = [json.loads(line) for line in (ROOT / "configs/harness/qa.jsonl").read_text().splitlines()]
MAX_TOKENS = 32


def _need(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{package} is not installed (the dev extra installs it)")


@pytest.fixture(scope="module")
def local_answers(tiny_model_dir: Path) -> dict[str, str]:
    """question -> the tiny model's greedy answer, generated here (what the server must have sent)."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = [render_prompt(tok, [{"role": "user", "content": row["question"]}]) for row in QA]
    done = greedy_generate(
        model, tok, prompts, max_new_tokens=MAX_TOKENS, batch_size=4, stop_ids=stop_token_ids(tok)
    )
    return {row["question"]: d.text for row, d in zip(QA, done, strict=True)}


def _run(argv: list[str], tmp_path: Path, **env: str) -> None:
    """Run a harness's command from the repository root, offline; it must succeed."""
    done = subprocess.run(
        argv, cwd=ROOT, env=_env(tmp_path, **env), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Offline, with every cache and trace under tmp_path (no leftovers used or left)."""
    env = dict(os.environ)
    env.update(
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        **extra,
    )
    return env


def test_lm_evaluation_harness_against_lmtune_serve(
    tiny_model_dir: Path, tmp_path: Path, local_answers: dict[str, str]
) -> None:
    _need("lm_eval", "lm-eval")
    out = tmp_path / "lm_eval"
    with background_server(tiny_model_dir, ServeConfig()) as url:
        _run(
            [
                sys.executable,
                "-m",
                "lm_eval",
                "--model",
                "local-chat-completions",
                "--model_args",
                f"base_url={url}/v1/chat/completions,model=model,num_concurrent=2",
                "--tasks",
                "lmtune_qa",
                "--include_path",
                "configs/harness/lm_eval",
                "--apply_chat_template",
                "--output_path",
                str(out),
                "--log_samples",
            ],
            tmp_path,
        )
    (results,) = out.glob("*/results_*.json")
    found = json.loads(results.read_text())
    assert found["n-samples"]["lmtune_qa"]["effective"] == len(QA)
    score = found["results"]["lmtune_qa"]["exact_match,strip"]
    (samples,) = out.glob("*/samples_lmtune_qa_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == len(QA)
    for row in rows:  # the harness got the model's own greedy answer to each question
        assert row["resps"][0][0] == local_answers[row["doc"]["question"]]
    right = sum(r["exact_match"] for r in rows)
    assert score == pytest.approx(right / len(QA))


def test_inspect_against_lmtune_serve(
    tiny_model_dir: Path, tmp_path: Path, local_answers: dict[str, str]
) -> None:
    _need("inspect_ai", "inspect-ai")
    logs = tmp_path / "inspect"
    inspect = Path(sys.executable).parent / "inspect"
    with background_server(tiny_model_dir, ServeConfig()) as url:
        _run(
            [
                str(inspect),
                "eval",
                "configs/harness/inspect_task.py@lmtune_qa",
                "--model",
                "openai-api/lmtune/model",
                "--max-tokens",
                str(MAX_TOKENS),
                "--temperature",
                "0",
                "--max-connections",
                "4",
                "--log-dir",
                str(logs),
                "--log-format",
                "json",
                "--display",
                "plain",
            ],
            tmp_path,
            LMTUNE_BASE_URL=f"{url}/v1",
            LMTUNE_API_KEY="unused",
        )
    (log_file,) = logs.glob("*.json")
    log = json.loads(log_file.read_text())
    assert log["status"] == "success", log.get("error")  # inspect exits 0 even when the eval failed
    samples = log["samples"]
    assert len(samples) == len(QA)
    for sample in samples:
        assert sample["output"]["choices"][0]["message"]["content"] == local_answers[sample["input"]]
    accuracy = log["results"]["scores"][0]["metrics"]["accuracy"]["value"]
    right = sum(s["scores"]["match"]["value"] == "C" for s in samples)
    assert accuracy == pytest.approx(right / len(QA))
