"""Continuous batching in the served engine: concurrent greedy requests answer exactly as one-at-a-time
generation does, a cancelled request leaves the others alone, and SIGTERM lets the requests in flight
finish while refusing new ones."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from lmtune.config.backends import TransformersBackend
from lmtune.serve.engine import Completion, SamplingParams, TransformersEngine

QUESTIONS = [f"tell me about {n} apples and the cat" for n in range(8)]


@pytest.fixture(scope="module")
def batching(tiny_model_dir: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(tiny_model_dir, TransformersBackend(batching=True))
    assert engine.batcher is not None
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def alone(tiny_model_dir: Path) -> TransformersEngine:
    """The same model without batching: one generation at a time."""
    engine = TransformersEngine(tiny_model_dir, TransformersBackend(batching=False))
    assert engine.batcher is None
    return engine


def _one_at_a_time(
    engine: TransformersEngine, prompts: list[list[int]], params: SamplingParams
) -> list[Completion]:
    return [engine.generate(p, params) for p in prompts]


@pytest.mark.parametrize("stop", [(), ("e",)])
def test_concurrent_greedy_requests_answer_as_one_at_a_time(
    batching: TransformersEngine, alone: TransformersEngine, stop: tuple[str, ...]
) -> None:
    prompts = [batching.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    params = SamplingParams(max_new_tokens=24, temperature=0, stop=stop)
    expected = _one_at_a_time(alone, prompts, params)
    streamed: list[list[str]] = [[] for _ in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        done = list(pool.map(lambda i: batching.generate(prompts[i], params, streamed[i].append), range(8)))
    assert [d.token_ids for d in done] == [e.token_ids for e in expected]
    assert [d.text for d in done] == [e.text for e in expected]
    assert [d.finish_reason for d in done] == [e.finish_reason for e in expected]
    assert ["".join(pieces) for pieces in streamed] == [d.text for d in done]
    if stop:
        assert any(d.finish_reason == "stop" for d in done) and not any("e" in d.text for d in done)


def test_cancelling_one_request_leaves_the_others_alone(
    batching: TransformersEngine, alone: TransformersEngine
) -> None:
    prompts = [batching.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS[:3]]
    params = SamplingParams(max_new_tokens=200, temperature=0)
    expected = _one_at_a_time(alone, prompts, params)
    cancel = threading.Event()
    pieces: list[str] = []

    def leave_after_some_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            cancel.set()  # the client of request 0 goes away

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batching.generate, prompts[0], params, leave_after_some_text, cancel)
        others = [pool.submit(batching.generate, p, params) for p in prompts[1:]]
        done = [first.result(timeout=120)] + [o.result(timeout=120) for o in others]
    assert done[0].finish_reason == "cancelled"
    assert 0 < done[0].completion_tokens < expected[0].completion_tokens
    assert done[0].token_ids == expected[0].token_ids[: done[0].completion_tokens]
    assert [d.token_ids for d in done[1:]] == [e.token_ids for e in expected[1:]]


def test_sampled_requests_hold_the_batch_and_stay_seeded(
    batching: TransformersEngine, alone: TransformersEngine
) -> None:
    """A seeded sampled request beside greedy ones in flight: drawn as without batching, and the
    greedy ones still answer exactly."""
    prompts = [batching.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS[:4]]
    greedy = SamplingParams(max_new_tokens=60, temperature=0)
    sampled = SamplingParams(max_new_tokens=16, temperature=0.9, seed=7)
    with ThreadPoolExecutor(5) as pool:
        running = [pool.submit(batching.generate, p, greedy) for p in prompts]
        drawn = pool.submit(batching.generate, prompts[0], sampled).result(timeout=120)
        done = [r.result(timeout=120) for r in running]
    assert drawn.token_ids == alone.generate(prompts[0], sampled).token_ids
    assert [d.token_ids for d in done] == [e.token_ids for e in _one_at_a_time(alone, prompts, greedy)]


def test_sigterm_drains_the_requests_in_flight_and_refuses_new_ones(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    code = (
        "from lmtune.config.deploy import MonitorConfig, ServeConfig\n"
        "from lmtune.serve.run import serve\n"
        f"serve({str(tiny_model_dir)!r}, ServeConfig(port=0, max_tokens_limit=400), "
        f"MonitorConfig(db_path={str(tmp_path / 'requests.sqlite')!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and not line.startswith("lmtune: serving"):
            line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        base = url.removesuffix("/v1")
        for _ in range(200):
            try:
                httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        body = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}]}
        result: dict[str, httpx.Response] = {}
        worker = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(
                    f"{url}/chat/completions", json=body | {"max_tokens": 400, "temperature": 0}, timeout=120
                )
            )
        )
        worker.start()
        while httpx.get(f"{base}/health", timeout=5).json()["in_flight"] == 0:
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(200):  # the listening socket closes at once; the request in flight goes on
            try:
                httpx.post(f"{url}/chat/completions", json=body | {"max_tokens": 2}, timeout=5)
            except httpx.TransportError:
                refused = True
                break
            time.sleep(0.02)
        worker.join(timeout=120)
        assert refused
        assert result["r"].status_code == 200
        assert result["r"].json()["usage"]["completion_tokens"] == 400  # not cut short
        # uvicorn re-raises the signal once it has shut down, so the exit reads as SIGTERM's
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_engine_left_open_does_not_keep_the_process_alive(tiny_model_dir: Path) -> None:
    """The manager's thread would otherwise hold the interpreter open after the last line (a test run
    that never ends); at exit the batch is stopped cleanly."""
    code = (
        "from lmtune.config.backends import TransformersBackend\n"
        "from lmtune.serve.engine import TransformersEngine\n"
        f"engine = TransformersEngine({str(tiny_model_dir)!r}, TransformersBackend(batching=True))\n"
        "assert engine.batcher is not None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr
