"""What continuous batching buys `lmtune serve`: 8 concurrent clients against one-at-a-time generation.

Drives the product's own server (`lmtune.serve.run.background_server`, the app `lmtune serve` runs) on
the real SmolLM2-135M-Instruct twice, in one run: with `serve.backend.batching: false` (every request
generates alone, one after another) and with continuous batching (the default). Each time `--clients`
threads send the same `--requests` GSM8K questions over HTTP (greedy, `--max-tokens`), each client taking
the next question as soon as its last one is answered. Reported: wall seconds, completion tokens per
second, the speed-up, and how many answers are token for token identical between the two servers.

    .venv/bin/python benchmarks/serve_batching.py [--clients 8] [--requests 32] [--max-tokens 96]

Writes benchmarks/results/serve_batching.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from lmtune.config.backends import TransformersBackend
from lmtune.config.deploy import ServeConfig
from lmtune.evaluate.tasks import read_task_file
from lmtune.runtime.load import SMOLLM2_ALIAS, resolve_model_path
from lmtune.serve.run import background_server

OUT = Path(__file__).parent / "results" / "serve_batching.json"


def drive(
    folder: Path, batching: bool, questions: list[str], clients: int, max_tokens: int
) -> dict[str, Any]:
    """Serve `folder`, answer every question with `clients` concurrent clients; answers in order."""
    cfg = ServeConfig(max_concurrency=clients, backend=TransformersBackend(batching=batching))
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(questions)):
        todo.put(i)
    answers: list[dict[str, Any]] = [{} for _ in questions]
    with background_server(folder, cfg) as base:
        url = f"{base}/v1/chat/completions"
        body = {"model": folder.name, "temperature": 0, "max_tokens": max_tokens}

        def client() -> None:
            with httpx.Client(timeout=600) as http:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    messages = [{"role": "user", "content": questions[i]}]
                    reply = http.post(url, json=body | {"messages": messages})
                    reply.raise_for_status()
                    answers[i] = reply.json()

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
    tokens = sum(a["usage"]["completion_tokens"] for a in answers)
    return {
        "batching": batching,
        "seconds": round(seconds, 1),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "texts": [a["choices"][0]["message"]["content"] for a in answers],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    folder = Path(resolve_model_path(SMOLLM2_ALIAS))
    questions = [item.messages[-1]["content"] for item in read_task_file("gsm8k")[: args.requests]]
    alone = drive(folder, False, questions, args.clients, args.max_tokens)
    batched = drive(folder, True, questions, args.clients, args.max_tokens)
    same = sum(a == b for a, b in zip(alone["texts"], batched["texts"], strict=True))
    result = {
        "device": f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "date": time.strftime("%Y-%m-%d"),
        "model": SMOLLM2_ALIAS,
        "clients": args.clients,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "one_at_a_time": {k: v for k, v in alone.items() if k != "texts"},
        "continuous_batching": {k: v for k, v in batched.items() if k != "texts"},
        "speedup": round(batched["tokens_per_s"] / alone["tokens_per_s"], 2),
        "identical_answers": same,
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
