"""POST /v1/chat/completions and the other endpoints, through FastAPI's TestClient."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from serve_helpers import MODEL, chat_body, sse_events

from lmtune.config.deploy import ServeConfig
from lmtune.serve.app import create_app
from lmtune.serve.engine import SamplingParams, TransformersEngine


def _post(served: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = served.client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _stream(served: Any, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    r = served.client.post("/v1/chat/completions", json=body | {"stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    raw = sse_events(r.text)
    return [json.loads(e) for e in raw if e != "[DONE]"], raw


def test_completion_has_the_openai_shape(served: Any) -> None:
    out = _post(served, chat_body())
    assert set(out) >= {"id", "object", "created", "model", "choices", "usage"}
    assert out["id"].startswith("chatcmpl-")
    assert out["object"] == "chat.completion"
    assert out["model"] == MODEL
    assert isinstance(out["created"], int)
    [choice] = out["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_prompt_is_the_chat_template_with_generation_prompt(served: Any, tiny_tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "two cats"}]
    out = _post(served, chat_body(messages=messages))
    ids = tiny_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    without_gen_prompt = tiny_tokenizer.apply_chat_template(
        messages, add_generation_prompt=False, tokenize=True, return_dict=True
    )
    assert out["usage"]["prompt_tokens"] == len(ids["input_ids"])
    assert len(ids["input_ids"]) > len(without_gen_prompt["input_ids"])


def test_greedy_is_deterministic_and_budget_bounds_length(served: Any) -> None:
    first = _post(served, chat_body(max_tokens=3))
    second = _post(served, chat_body(max_tokens=3))
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    # the tiny model does not emit eos in its first greedy tokens, so the budget ends it
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["usage"]["completion_tokens"] == 3


def test_streaming_concatenates_to_the_plain_text(served: Any) -> None:
    plain = _post(served, chat_body())
    chunks, raw = _stream(served, chat_body())
    assert raw[-1] == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == plain["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert len(chunks) >= 3  # role chunk, at least one content chunk, finish chunk


def test_stream_usage_chunk_matches_plain_usage(served: Any) -> None:
    plain = _post(served, chat_body())
    chunks, _ = _stream(served, chat_body(stream_options={"include_usage": True}))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]
    assert all("usage" not in c for c in chunks[:-1])


def test_seeded_sampling_is_reproducible(served: Any) -> None:
    body = chat_body(temperature=1.0, top_p=0.9, seed=1234, max_tokens=12)
    a = _post(served, body)["choices"][0]["message"]["content"]
    b = _post(served, body)["choices"][0]["message"]["content"]
    chunks, _ = _stream(served, body)
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert a == b == streamed
    others = {_post(served, body | {"seed": s})["choices"][0]["message"]["content"] for s in range(4)}
    assert len(others) > 1  # the seed matters: sampling is really on


def test_stop_sequence_cuts_text_before_it(served: Any) -> None:
    full = _post(served, chat_body(max_tokens=8))["choices"][0]["message"]["content"]
    stop = full[4:6]
    expected = full[: full.index(stop)]
    out = _post(served, chat_body(max_tokens=8, stop=[stop, "never-appears"]))
    assert out["choices"][0]["message"]["content"] == expected
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] < 8
    chunks, _ = _stream(served, chat_body(max_tokens=8, stop=stop))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_generation_stops_on_the_generation_config_eos(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Point generation_config's eos at the first greedy token: the reply is empty and ends with stop."""
    engine = TransformersEngine(tiny_model_dir)
    prompt = engine.encode_chat(chat_body()["messages"])
    before = engine.generate(prompt, SamplingParams(max_new_tokens=2, temperature=0))
    assert before.finish_reason == "length" and before.completion_tokens == 2
    out = engine.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=1, do_sample=False)
    first_token = int(out[0, -1])
    assert first_token not in engine.generator.stop_ids
    folder = tmp_path / "eos-model"
    shutil.copytree(tiny_model_dir, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = first_token
    (folder / "generation_config.json").write_text(json.dumps(gen))
    served = TestClient(create_app(folder, ServeConfig()))
    out = served.post("/v1/chat/completions", json=chat_body(model="eos-model")).json()
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 1


def test_text_parts_and_developer_role_match_plain_forms(served: Any) -> None:
    plain = _post(
        served, chat_body(messages=[{"role": "system", "content": "hi"}, {"role": "user", "content": "ab"}])
    )
    parts = _post(
        served,
        chat_body(
            messages=[
                {"role": "developer", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ]
        ),
    )
    assert parts["choices"][0]["message"] == plain["choices"][0]["message"]
    assert parts["usage"] == plain["usage"]


def test_models_health_and_name(make_served: Callable[..., Any]) -> None:
    served = make_served(model_name="tiny-chat")
    models = served.client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny-chat"]
    assert served.client.get("/v1/models/tiny-chat").json()["id"] == "tiny-chat"
    assert served.client.get("/v1/models/other").status_code == 404
    health = served.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    out = _post(served, chat_body(model="tiny-chat"))
    assert out["model"] == "tiny-chat"
    assert served.client.post("/v1/chat/completions", json=chat_body()).status_code == 404


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_either_budget_field_is_honoured(served: Any, field: str) -> None:
    body = chat_body()
    del body["max_tokens"]
    out = _post(served, body | {field: 2})
    assert out["usage"]["completion_tokens"] == 2


def test_no_budget_means_the_server_limit(make_served: Callable[..., Any]) -> None:
    served = make_served(max_tokens_limit=5)
    body = chat_body()
    del body["max_tokens"]
    out = _post(served, body)
    assert out["usage"]["completion_tokens"] == 5
    assert out["choices"][0]["finish_reason"] == "length"
