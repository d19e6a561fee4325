"""What the server records about each API request: Prometheus metrics and a row in the request store.

`RecordingMiddleware` wraps every `/v1/` request (rejected ones included); handlers fill in the
request's `Outcome` as they learn things (model named, token counts, finish reason), and the
middleware records it once the last byte of the response — or of the stream — has been sent.
It also runs the outcome's cleanups, so a concurrency slot is released however a request ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmtune.monitor.metrics import Registry
from lmtune.monitor.store import RequestRecord, RequestStore

OUTCOME_KEY = "lmtune.outcome"
"""Where the request's `Outcome` lives in the ASGI scope."""

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one request did, filled in by its handler."""

    model: str | None = None
    stream: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error_type: str | None = None
    prompt: str | None = None
    completion: str | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)


class ServeMetrics:
    """The server's Prometheus metrics."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.requests = self.registry.counter(
            "lmtune_requests_total",
            "API requests answered, by endpoint and HTTP status.",
            ("endpoint", "status"),
        )
        self.latency = self.registry.histogram(
            "lmtune_request_latency_seconds",
            "Time from request arrival to the last byte of the response.",
            ("endpoint",),
        )
        self.prompt_tokens = self.registry.counter(
            "lmtune_prompt_tokens_total", "Prompt tokens of admitted generations."
        )
        self.completion_tokens = self.registry.counter("lmtune_completion_tokens_total", "Tokens generated.")
        self.in_flight = self.registry.gauge(
            "lmtune_requests_in_flight", "Chat completions holding a concurrency slot."
        )


class RecordingMiddleware:
    """ASGI middleware that meters and stores every request under `/v1/`."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, store: RequestStore | None) -> None:
        self.app = app
        self.metrics = metrics
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        outcome = Outcome()
        scope[OUTCOME_KEY] = outcome
        arrived, start = time.time(), time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            for cleanup in outcome.cleanups:
                cleanup()
            self._record(scope["path"], status, arrived, time.perf_counter() - start, outcome)

    def _record(self, path: str, status: int, arrived: float, seconds: float, outcome: Outcome) -> None:
        endpoint = metric_endpoint(path)
        self.metrics.requests.inc(endpoint=endpoint, status=str(status))
        self.metrics.latency.observe(seconds, endpoint=endpoint)
        if outcome.prompt_tokens is not None:
            self.metrics.prompt_tokens.inc(outcome.prompt_tokens)
        if outcome.completion_tokens is not None:
            self.metrics.completion_tokens.inc(outcome.completion_tokens)
        if self.store is None:
            return
        record = RequestRecord(
            ts=arrived,
            endpoint=path[:200],
            status=status,
            latency_ms=seconds * 1000,
            model=outcome.model,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            stream=outcome.stream,
            finish_reason=outcome.finish_reason,
            error_type=outcome.error_type,
            prompt=outcome.prompt,
            completion=outcome.completion,
        )
        try:
            self.store.record(record)
        except Exception:  # a full disk must not take the API down with it
            log.exception("could not store request record")


def metric_endpoint(path: str) -> str:
    """The `endpoint` label for a path: a fixed set, so random URLs cannot blow up the series count."""
    if path == "/v1/chat/completions":
        return path
    if path == "/v1/models" or path.startswith("/v1/models/"):
        return "/v1/models"
    return "other"


def outcome_of(scope: Scope) -> Outcome:
    """The request's `Outcome` (a detached one for requests the middleware does not watch)."""
    found = scope.get(OUTCOME_KEY)
    return found if isinstance(found, Outcome) else Outcome()
