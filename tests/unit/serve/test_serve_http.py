"""Over real HTTP: uvicorn in a thread (background_server), the official openai client, `serve()`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from serve_helpers import MODEL

from lmtune.config.deploy import ServeConfig
from lmtune.monitor.store import RequestStore
from lmtune.serve.run import background_server, default_db_path

MESSAGES = [{"role": "user", "content": "how many books"}]


def test_openai_client_plain_and_streaming(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "requests.sqlite")
    with background_server(tiny_model_dir, ServeConfig(), store) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]

        plain = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,
            temperature=0,  # type: ignore[arg-type]
        )
        assert plain.object == "chat.completion"
        assert plain.choices[0].message.role == "assistant"
        assert plain.choices[0].finish_reason in ("stop", "length")
        assert plain.usage is not None and plain.usage.completion_tokens <= 8

        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain.choices[0].message.content
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == plain.usage.total_tokens

        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError, match="only n=1 is supported"):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)  # type: ignore[arg-type]
    with pytest.raises(httpx.ConnectError):  # stopped on exit
        httpx.get(f"{base_url}/health", timeout=2)
    assert [r.status for r in reversed(store.recent(10))] == [200, 200, 200, 404, 400]
    store.close()


def test_openai_client_with_api_key(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMTUNE_HTTP_KEY", "k-123")
    with background_server(tiny_model_dir, ServeConfig(api_key_env="LMTUNE_HTTP_KEY")) as base_url:
        good = openai.OpenAI(base_url=f"{base_url}/v1", api_key="k-123", max_retries=0)
        out = good.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
        assert out.usage is not None and out.usage.completion_tokens == 2
        bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            bad.models.list()


def test_default_db_path(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    (run / "export" / "merged").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "config.yaml").write_text("name: a\n")
    assert default_db_path(run / "model") == run / "monitor" / "requests.sqlite"
    assert default_db_path(run / "export" / "merged") == run / "monitor" / "requests.sqlite"
    loose = tmp_path / "models" / "m"
    loose.mkdir(parents=True)
    assert default_db_path(loose) == tmp_path / "models" / "monitor" / "requests.sqlite"


def test_serve_prints_its_url_and_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "served.sqlite"
    code = (
        "from lmtune.config.deploy import MonitorConfig, ServeConfig\n"
        "from lmtune.serve.run import serve\n"
        f"serve({str(tiny_model_dir)!r}, ServeConfig(port=0), MonitorConfig(db_path={str(db)!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"lmtune: serving '{MODEL}' at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert url.endswith("/v1")
        r = None
        for _ in range(200):  # the socket is bound before the print; uvicorn starts listening soon after
            try:
                r = httpx.get(f"{url}/models", timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert r is not None and r.status_code == 200
        assert r.json()["data"][0]["id"] == MODEL
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = RequestStore(db)
    assert [row.endpoint for row in store.recent(5)] == ["/v1/models"]
    store.close()


def test_client_leaving_a_stream_stops_the_generation(tiny_model_dir: Path, tmp_path: Path) -> None:
    store = RequestStore(tmp_path / "requests.sqlite")
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1500, "temperature": 0}
    with background_server(tiny_model_dir, ServeConfig(max_tokens_limit=1500), store) as base_url:
        url = f"{base_url}/v1/chat/completions"
        start = time.perf_counter()
        assert httpx.post(url, json=body, timeout=60).json()["usage"]["completion_tokens"] == 1500
        full = time.perf_counter() - start

        start = time.perf_counter()
        with httpx.stream("POST", url, json=body | {"stream": True}, timeout=60) as r:
            events = [line for _, line in zip(range(3), r.iter_lines(), strict=False)]
        assert events[0].startswith("data: ")
        # the next request waits for the model lock: fast only if the abandoned generation stopped
        assert httpx.post(url, json=body | {"max_tokens": 2}, timeout=60).status_code == 200
        assert time.perf_counter() - start < full / 2
    rows = list(reversed(store.recent(3)))
    assert [(r.stream, r.finish_reason) for r in rows] == [
        (False, "length"),
        (True, "cancelled"),
        (False, "length"),
    ]
    store.close()


def test_serve_flags_set_the_name_and_the_key_variable() -> None:
    """`lmtune serve --model-name --api-key-env` (what the Docker image and the k8s manifests run)."""
    from lmtune.cli.deploy_options import serve_config
    from lmtune.cli.parser import build_parser

    args = build_parser().parse_args(
        ["serve", "model", "--model-name", "my-model", "--api-key-env", "MY_KEY", "--port", "9000"]
    )
    serve_cfg, _ = serve_config(args)
    assert (serve_cfg.model_name, serve_cfg.api_key_env, serve_cfg.port) == ("my-model", "MY_KEY", 9000)
    defaults, _ = serve_config(build_parser().parse_args(["serve", "model"]))
    assert (defaults.model_name, defaults.api_key_env) == (None, None)
