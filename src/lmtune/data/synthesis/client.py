"""The HTTP side of `lmtune data synthesize`: a rate limiter and a chat-completions client with retries.

Any OpenAI-compatible API works (`lmtune serve`, vLLM, llama.cpp's server, OpenAI). A 429, a 5xx or a
lost connection is retried after the server's `Retry-After` (seconds or an HTTP date; at most 300 s) or,
without one, after 1, 2, 4, ... s (at most 30 s). Any other 4xx stops the run with the server's message:
it would fail the same way for every request. Time is read through a `Clock`, so tests use a fake one.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from lmtune.errors import ConfigError, LmtuneError

if TYPE_CHECKING:
    import httpx

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
MAX_RETRY_AFTER_S = 300.0
_RETRIED_STATUS = 429


class EndpointError(LmtuneError):
    """The endpoint cannot be reached, refuses the requests, or keeps failing after the retries."""


class Clock(Protocol):
    """Where waiting happens: `time` in a real run, a fake clock in tests."""

    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (`time.monotonic`, `time.sleep`)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class RateLimiter:
    """Starts at most `rps` requests per second: each start is at least 1/rps after the previous one
    (a token bucket holding one token, so there are no bursts). Thread-safe; None means no limit."""

    def __init__(self, rps: float | None, clock: Clock) -> None:
        self.interval = 1.0 / rps if rps is not None else None
        self.clock = clock
        self._next = float("-inf")
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait until the next request may start, and take its slot."""
        if self.interval is None:
            return
        with self._lock:
            now = self.clock.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.clock.sleep(start - now)


@dataclass(frozen=True)
class Completion:
    """One answer: the generated text, or `problem` when the 200 response was not a chat completion."""

    text: str | None
    finish_reason: str | None
    model: str | None
    """The model the server says answered."""
    problem: str | None = None


def api_base(endpoint: str) -> str:
    """The API base URL: without a trailing slash or a trailing `/chat/completions`."""
    base = endpoint.rstrip("/")
    suffix = "/chat/completions"
    return base[: -len(suffix)] if base.endswith(suffix) else base


def public_url(address: str) -> str:
    """`address` with any user:password removed (for messages and every record's provenance)."""
    # deferred: httpx only when this runs (keeps `import lmtune...` light)
    import httpx

    url = httpx.URL(address)
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay in seconds or an HTTP date); None if absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def api_key_from(variable: str | None, what: str) -> str | None:
    """The API key held by the environment variable `variable` (None when no variable is named).

    Raises:
        ConfigError: the variable is unset or empty (`what` names the setting that named it).
    """
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key:
        raise ConfigError(f"{what}: the environment variable {variable} is not set or empty")
    return key


def greedy_client(
    endpoint: str, model: str, *, api_key_env: str | None, timeout_s: float, what: str
) -> ChatClient:
    """A client for evaluation's requests (a judge, a model under test): 3 retries, no rate limit."""
    clock = SystemClock()
    return ChatClient(
        endpoint,
        model,
        api_key=api_key_from(api_key_env, what),
        timeout_s=timeout_s,
        max_retries=3,
        limiter=RateLimiter(None, clock),
        clock=clock,
    )


class ChatClient:
    """POSTs chat completions to one endpoint, rate-limited and retried; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None,
        timeout_s: float,
        max_retries: int,
        limiter: RateLimiter,
        clock: Clock,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # deferred: httpx only when this runs (keeps `import lmtune...` light)
        import httpx

        self.base = api_base(endpoint)
        self.model = model
        self.max_retries = max_retries
        self.limiter = limiter
        self.clock = clock
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def check_model(self) -> None:
        """One GET /models before the run: an unreachable server, a refused key or a model the server does
        not list fails here, in one line. A server without /models (404) is not checked further.

        Raises:
            EndpointError: connection refused / timed out, 401/403, or `model` missing from the list.
        """
        # deferred: httpx only when this runs (keeps `import lmtune...` light)
        import httpx

        url = f"{self.base}/models"
        try:
            response = self._http.get(url)
        except httpx.TransportError as exc:
            raise EndpointError(
                f"cannot reach {public_url(self.base)} ({_describe(exc)}); is the server running, and is "
                "--endpoint its API base (e.g. http://127.0.0.1:8000/v1)?"
            ) from None
        if response.status_code in (401, 403):
            raise EndpointError(_refused(url, response))
        if response.status_code != 200:
            return
        try:
            served = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if served and self.model not in served:
            shown = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
            raise ConfigError(
                f"--model {self.model}: {public_url(self.base)} does not serve it (it serves: {shown})"
            )

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        """Ask for one chat completion; retries 429, 5xx and lost connections.

        Args:
            messages: the chat messages.
            params: sampling fields added to the body (temperature, max_tokens, seed).

        Raises:
            EndpointError: a 4xx other than 429, or still failing after `max_retries` retries.
        """
        # deferred: httpx only when this runs (keeps `import lmtune...` light)
        import httpx

        url = f"{self.base}/chat/completions"
        body = {"model": self.model, "messages": messages, **params}
        for attempt in range(self.max_retries + 1):
            self.limiter.acquire()
            try:
                response = self._http.post(url, json=body)
            except httpx.TransportError as exc:
                failure = _describe(exc)
                wait = _backoff(attempt)
            else:
                if response.status_code == 200:
                    return _completion(response)
                if response.status_code != _RETRIED_STATUS and response.status_code < 500:
                    if response.status_code in (401, 403):
                        raise EndpointError(_refused(url, response))
                    hint = (
                        " (is --endpoint the API base, usually ending in /v1?)"
                        if response.status_code == 404
                        else ""
                    )
                    raise EndpointError(
                        f"{public_url(url)} answered {response.status_code}: {_error_message(response)}{hint}"
                    )
                failure = f"{response.status_code} ({_error_message(response)})"
                after = retry_after_seconds(response.headers.get("retry-after"))
                wait = min(after, MAX_RETRY_AFTER_S) if after is not None else _backoff(attempt)
            if attempt < self.max_retries:
                self.clock.sleep(wait)
        raise EndpointError(f"{public_url(url)}: {failure} after {self.max_retries} retries")


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error_message(response: httpx.Response) -> str:
    """The OpenAI-style `error.message`, else the start of the body."""
    try:
        message = response.json()["error"]["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return response.text[:200].strip() or "(empty body)"


def _refused(url: str, response: httpx.Response) -> str:
    return (
        f"{public_url(url)} refused the request ({response.status_code}: {_error_message(response)}); "
        "name the variable holding the API key with --api-key-env"
    )


def _completion(response: httpx.Response) -> Completion:
    try:
        body = response.json()
        choice = body["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError(f"message.content is {type(text).__name__}")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        problem = f"the 200 response is not a chat completion ({_describe(exc)}): {response.text[:200]}"
        return Completion(None, None, None, problem)
    model = body.get("model") if isinstance(body.get("model"), str) else None
    return Completion(text, choice.get("finish_reason"), model)
