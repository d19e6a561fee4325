"""Each /v1/ request leaves one row in the store and adds up in /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from serve_helpers import MODEL, chat_body, parse_metrics, sse_events

CHAT = "/v1/chat/completions"


def test_one_row_per_request_with_token_counts_and_no_text(served: Any) -> None:
    plain = served.client.post(CHAT, json=chat_body()).json()
    stream = served.client.post(CHAT, json=chat_body(max_tokens=5, stream=True))
    assert sse_events(stream.text)[-1] == "[DONE]"
    served.client.post(CHAT, json=chat_body(n=3))
    served.client.get("/v1/models")
    served.client.get("/health")  # not an API request: not recorded
    served.client.get("/metrics")

    rows = list(reversed(served.store.recent(10)))
    assert [(r.endpoint, r.status, r.stream) for r in rows] == [
        (CHAT, 200, False),
        (CHAT, 200, True),
        (CHAT, 400, False),
        ("/v1/models", 200, False),
    ]
    first, streamed, rejected, _ = rows
    assert (first.prompt_tokens, first.completion_tokens) == (
        plain["usage"]["prompt_tokens"],
        plain["usage"]["completion_tokens"],
    )
    assert first.finish_reason == plain["choices"][0]["finish_reason"]
    assert first.model == MODEL
    assert streamed.prompt_tokens == first.prompt_tokens
    assert streamed.completion_tokens == 5 and streamed.finish_reason == "length"
    assert rejected.prompt_tokens is None and rejected.error_type == "invalid_request_error"
    assert all(r.prompt is None and r.completion is None for r in rows)
    assert all(r.latency_ms > 0 for r in rows)
    assert rows[0].latency_ms > rows[3].latency_ms  # generating takes longer than listing models


def test_log_prompts_stores_messages_and_completion(make_served: Callable[..., Any]) -> None:
    served = make_served(log_prompts=True)
    body = chat_body(content="three apples")
    text = served.client.post(CHAT, json=body).json()["choices"][0]["message"]["content"]
    chunks = sse_events(served.client.post(CHAT, json=body | {"stream": True}).text)
    streamed = "".join(json.loads(c)["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    plain_row, stream_row = reversed(served.store.recent(2))
    assert json.loads(plain_row.prompt) == body["messages"]
    assert plain_row.completion == text
    assert stream_row.completion == streamed == text


def test_metrics_add_up_to_the_requests_made(served: Any) -> None:
    usages = [served.client.post(CHAT, json=chat_body(max_tokens=k)).json()["usage"] for k in (2, 3)]
    usages.append(
        json.loads(
            sse_events(
                served.client.post(
                    CHAT, json=chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True})
                ).text
            )[-2]
        )["usage"]
    )
    for bad in (chat_body(n=2), chat_body(model="x"), chat_body(messages=[])):
        served.client.post(CHAT, json=bad)
    served.client.get("/v1/models")

    r = served.client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name, kind in [
        ("lmtune_requests_total", "counter"),
        ("lmtune_request_latency_seconds", "histogram"),
        ("lmtune_prompt_tokens_total", "counter"),
        ("lmtune_completion_tokens_total", "counter"),
        ("lmtune_requests_in_flight", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    samples = parse_metrics(text)

    def requests(endpoint: str, status: str) -> float:
        return samples[("lmtune_requests_total", frozenset({("endpoint", endpoint), ("status", status)}))]

    assert requests(CHAT, "200") == 3
    assert requests(CHAT, "400") == 2
    assert requests(CHAT, "404") == 1
    assert requests("/v1/models", "200") == 1
    chat_hist = frozenset({("endpoint", CHAT)})
    assert samples[("lmtune_request_latency_seconds_count", chat_hist)] == 6
    assert samples[("lmtune_request_latency_seconds_bucket", chat_hist | {("le", "+Inf")})] == 6
    assert samples[("lmtune_request_latency_seconds_sum", chat_hist)] > 0
    assert samples[("lmtune_prompt_tokens_total", frozenset())] == sum(u["prompt_tokens"] for u in usages)
    assert samples[("lmtune_completion_tokens_total", frozenset())] == 2 + 3 + 4
    assert samples[("lmtune_requests_in_flight", frozenset())] == 0
    assert served.store.count() == 7
