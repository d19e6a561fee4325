"""Fixtures: run directories shaped like the data + train stages leave them (see tuned_run.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tuned_run import make_run

from lmtune.runtime.rundir import RunDir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> RunDir:
    """A LoRA run with a strongly perturbed adapter and a GSM8K-style eval split."""
    return make_run(tmp_path_factory.mktemp("evalrun"), tiny_model_dir, scale=0.5)


class _FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint standing in for a judge model: it rates an answer by the
    share of the reference's words it contains ("Rating: [[N]]" out of 10), and in a pairwise prompt
    prefers the longer answer ("[[A]]" / "[[B]]"), whichever position it is in. Every request is kept."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeJudge.seen.append(body)
        prompt = body["messages"][-1]["content"]
        if "Assistant A's Answer" in prompt:
            a = prompt.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
            b = prompt.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
            text = "[[C]]" if len(a) == len(b) else ("[[A]]" if len(a) > len(b) else "[[B]]")
        else:
            ref = prompt.split("[Reference]\n")[1].split("\n\n")[0].split() if "[Reference]" in prompt else []
            answer = prompt.split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
            share = sum(w in answer for w in ref) / len(ref) if ref else 0.5
            text = f"It covers {share:.0%} of the reference. Rating: [[{1 + round(9 * share)}]]"
        reply = {
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "model": body["model"],
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="session")
def judge_endpoint() -> Iterator[str]:
    """The fake judge on a loopback port; yields its API base."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
