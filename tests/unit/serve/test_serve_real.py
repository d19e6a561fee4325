"""The server over the real SmolLM2-135M-Instruct (skipped when the asset is missing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lmtune.config.deploy import ServeConfig
from lmtune.serve.app import create_app


@pytest.mark.real
def test_smollm2_answers_and_stops_on_its_eos(smollm2_dir: Path) -> None:
    client = TestClient(create_app(smollm2_dir, ServeConfig(model_name="smollm2")))
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        "max_tokens": 32,
        "temperature": 0,
    }
    out = client.post("/v1/chat/completions", json=body).json()
    choice = out["choices"][0]
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"  # ended on <|im_end|>, not on the budget
    assert "<|im_end|>" not in choice["message"]["content"]
    assert out["usage"]["completion_tokens"] < 32
