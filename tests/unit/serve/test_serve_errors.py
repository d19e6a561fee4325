"""Every client mistake is a 4xx with an OpenAI-style error body — never a 5xx — and is recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from serve_helpers import MODEL, chat_body, parse_metrics

from lmtune.config.deploy import ServeConfig
from lmtune.errors import ConfigError
from lmtune.serve.app import create_app

USER = [{"role": "user", "content": "hi"}]


def _no(field: str) -> dict[str, Any]:
    body = chat_body()
    del body[field]
    return body


# (raw body, status, exact message, param)
BAD_REQUESTS = [
    pytest.param(b"{not json", 400, None, None, id="malformed-json"),
    pytest.param(b"\xff\xfe", 400, None, None, id="not-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, None, None, id="nested-too-deep"),
    pytest.param(
        b'{"model": "model", "messages": [], "temperature": NaN}', 400, None, None, id="nan-is-not-json"
    ),
    pytest.param(
        b'{"model": "model", "messages": [{"role": "user", "content": "\\ud800"}]}',
        400,
        "The request body contains an unpaired Unicode surrogate escape.",
        None,
        id="lone-surrogate",
    ),
    pytest.param(b"[1, 2]", 400, "The request body must be a JSON object.", None, id="not-an-object"),
    pytest.param(
        _no("messages"), 400, "Missing required parameter: 'messages'.", "messages", id="no-messages"
    ),
    pytest.param(_no("model"), 400, "Missing required parameter: 'model'.", "model", id="no-model"),
    pytest.param(
        chat_body(messages=[]),
        400,
        "Invalid value for 'messages': must contain at least one message",
        "messages",
        id="empty-messages",
    ),
    pytest.param(
        chat_body(messages="hi"),
        400,
        "Invalid type for 'messages': Input should be a valid list",
        "messages",
        id="messages-not-list",
    ),
    pytest.param(
        chat_body(messages=[{"role": "tool", "content": "x"}]),
        400,
        "Invalid value for 'messages[0].role': Input should be 'system', 'developer', 'user' or 'assistant'",
        "messages[0].role",
        id="unknown-role",
    ),
    pytest.param(
        chat_body(messages=[{"role": "user"}]),
        400,
        "Missing required parameter: 'messages[0].content'.",
        "messages[0].content",
        id="no-content",
    ),
    pytest.param(
        chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        400,
        "Invalid value for 'messages[0].content': content parts must be "
        '{"type": "text", "text": "..."}; only text is supported',
        "messages[0].content",
        id="image-part",
    ),
    pytest.param(
        chat_body(max_tokens="8"),
        400,
        "Invalid type for 'max_tokens': Input should be a valid integer",
        "max_tokens",
        id="max-tokens-string",
    ),
    pytest.param(
        chat_body(max_tokens=0),
        400,
        "Invalid value for 'max_tokens': Input should be greater than or equal to 1",
        "max_tokens",
        id="max-tokens-zero",
    ),
    pytest.param(
        chat_body(max_tokens=65),
        400,
        "Invalid value for 'max_tokens': 65 is larger than this server's limit of 64.",
        "max_tokens",
        id="max-tokens-over-limit",
    ),
    pytest.param(
        {k: v for k, v in chat_body().items() if k != "max_tokens"} | {"max_completion_tokens": 100},
        400,
        "Invalid value for 'max_completion_tokens': 100 is larger than this server's limit of 64.",
        "max_completion_tokens",
        id="max-completion-tokens-over-limit",
    ),
    pytest.param(
        chat_body(temperature="hot"),
        400,
        "Invalid type for 'temperature': Input should be a valid number",
        "temperature",
        id="temperature-string",
    ),
    pytest.param(
        chat_body(temperature=2.5),
        400,
        "Invalid value for 'temperature': Input should be less than or equal to 2",
        "temperature",
        id="temperature-too-high",
    ),
    pytest.param(
        chat_body(top_p=0),
        400,
        "Invalid value for 'top_p': Input should be greater than 0",
        "top_p",
        id="top-p-zero",
    ),
    pytest.param(
        chat_body(stream="yes"),
        400,
        "Invalid type for 'stream': Input should be a valid boolean",
        "stream",
        id="stream-string",
    ),
    pytest.param(
        chat_body(n=2), 400, "Invalid value for 'n': only n=1 is supported, got 2.", "n", id="n-two"
    ),
    pytest.param(
        chat_body(stop=["a", "b", "c", "d", "e"]),
        400,
        "Invalid value for 'stop': at most 4 stop sequences are allowed, got 5",
        "stop",
        id="too-many-stops",
    ),
    pytest.param(
        chat_body(stop=7),
        400,
        "Invalid value for 'stop': must be a non-empty string or a list of non-empty strings",
        "stop",
        id="stop-number",
    ),
    pytest.param(
        chat_body(seed=1.5),
        400,
        "Invalid type for 'seed': Input should be a valid integer",
        "seed",
        id="seed-float",
    ),
    pytest.param(
        chat_body(stop="x" * 257),
        400,
        "Invalid value for 'stop': each stop sequence may be at most 256 characters",
        "stop",
        id="stop-too-long",
    ),
    pytest.param(
        chat_body(seed=2**64),
        400,
        "Invalid value for 'seed': Input should be less than or equal to 9223372036854775807",
        "seed",
        id="seed-too-big",
    ),
    pytest.param(
        chat_body(presence_penalty=0.5),
        400,
        "Invalid value for 'presence_penalty': only 0 is supported by this server",
        "presence_penalty",
        id="penalty",
    ),
    pytest.param(
        chat_body(stream_options={"include_usage": True}),
        400,
        "Invalid value for 'stream_options': only allowed when 'stream' is true.",
        "stream_options",
        id="stream-options-without-stream",
    ),
    pytest.param(
        chat_body(logit_bias={"1": 5}),
        400,
        "Unrecognized request argument supplied: logit_bias",
        "logit_bias",
        id="unknown-field",
    ),
    pytest.param(
        chat_body(model="gpt-4"),
        404,
        "The model 'gpt-4' does not exist; this server serves one model (see GET /v1/models).",
        "model",
        id="wrong-model",
    ),
]


@pytest.fixture
def limited(make_served: Callable[..., Any]) -> Any:
    return make_served(max_tokens_limit=64, max_body_bytes=300_000)


@pytest.mark.parametrize(("body", "status", "message", "param"), BAD_REQUESTS)
def test_bad_request_gets_an_openai_error(
    limited: Any, body: bytes | dict[str, Any], status: int, message: str | None, param: str | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = limited.client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if message is None:
        assert error["message"].startswith("We could not parse the JSON body of your request")
    else:
        assert error["message"] == message
    [row] = limited.store.recent(5)
    assert (row.status, row.error_type, row.prompt_tokens, row.completion_tokens) == (
        status,
        "invalid_request_error",
        None,
        None,
    )


def test_body_over_the_limit_is_413(limited: Any) -> None:
    body = json.dumps(chat_body(content="x" * 300_000)).encode()
    r = limited.client.post("/v1/chat/completions", content=body)
    assert r.status_code == 413
    assert r.json()["error"]["message"] == "Request body is larger than this server's limit of 300000 bytes."


def test_chunked_body_over_the_limit_is_413(limited: Any) -> None:
    """No Content-Length to trust: the limit is enforced while reading."""
    body = json.dumps(chat_body(content="x" * 300_000)).encode()

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 50_000):
            yield body[i : i + 50_000]

    r = limited.client.post("/v1/chat/completions", content=pieces())
    assert r.status_code == 413


def test_prompt_longer_than_the_context_is_400(make_served: Callable[..., Any]) -> None:
    served = make_served(max_body_bytes=100_000)
    r = served.client.post("/v1/chat/completions", json=chat_body(content="one two " * 2100))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "messages"
    assert err["message"].endswith("tokens; this model's context length is 2048")


def test_unknown_path_and_method_are_openai_errors(served: Any) -> None:
    r = served.client.post("/v1/completions", json={})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Unknown request URL: POST /v1/completions."
    r = served.client.get("/v1/chat/completions")
    assert r.status_code == 405
    assert r.json()["error"]["message"] == "Method Not Allowed (GET /v1/chat/completions)."
    assert "POST" in r.headers["allow"]


def test_auth(make_served: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMTUNE_TEST_KEY", "s3cret")
    served = make_served(api_key_env="LMTUNE_TEST_KEY")
    post = served.client.post
    missing = post("/v1/chat/completions", json=chat_body())
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "invalid_api_key"
    wrong = post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Incorrect API key provided."
    assert served.client.get("/v1/models").status_code == 401
    ok = post("/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert served.client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert served.client.get("/health").status_code == 200  # probes stay open
    assert [r.status for r in served.store.recent(10)] == [200, 200, 401, 401, 401]


def test_auth_variable_must_be_set(tiny_model_dir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMTUNE_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="environment variable LMTUNE_UNSET_KEY is not set"):
        create_app(tiny_model_dir, ServeConfig(api_key_env="LMTUNE_UNSET_KEY"))


def test_busy_server_answers_429_with_retry_after(make_served: Callable[..., Any]) -> None:
    served = make_served(max_concurrency=1)
    engine, gate = served.app.state.engine, served.app.state.gate
    first: dict[str, Any] = {}
    with engine.lock:  # the model is busy: the first request takes the only slot and waits
        worker = threading.Thread(
            target=lambda: first.update(r=served.client.post("/v1/chat/completions", json=chat_body()))
        )
        worker.start()
        deadline = time.monotonic() + 20
        while gate.active < 1:
            assert time.monotonic() < deadline, "first request never took its slot"
            time.sleep(0.01)
        samples = parse_metrics(served.client.get("/metrics").text)
        assert samples[("lmtune_requests_in_flight", frozenset())] == 1
        busy = served.client.post("/v1/chat/completions", json=chat_body())
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_exceeded"
    worker.join(timeout=20)
    assert first["r"].status_code == 200
    assert gate.active == 0
    again = served.client.post("/v1/chat/completions", json=chat_body())
    assert again.status_code == 200
    assert [r.status for r in served.store.recent(5)] == [200, 200, 429]
    assert served.store.recent(5)[2].model == MODEL
