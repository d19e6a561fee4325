"""The server's gatekeeping: API key check, body size bound, concurrency bound (429 + Retry-After)."""

from __future__ import annotations

import hmac
import os
import threading

from starlette.requests import Request

from lmtune.config.deploy import ServeConfig
from lmtune.errors import ConfigError
from lmtune.monitor.metrics import Gauge
from lmtune.serve.protocol import APIError

RETRY_AFTER_SECONDS = 1


def read_api_key(cfg: ServeConfig) -> str | None:
    """The key clients must send, read from the variable `cfg.api_key_env` names (None: no auth).

    Raises:
        ConfigError: `api_key_env` is set but the variable is unset or empty — serving without the
            auth the config asked for would be a silent downgrade.
    """
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise ConfigError(
            f"serve.api_key_env: environment variable {cfg.api_key_env} is not set; "
            "set it to the API key clients must send, or remove serve.api_key_env"
        )
    return key


def check_api_key(request: Request, key: str | None) -> None:
    """Require `Authorization: Bearer <key>` when a key is configured (401 otherwise)."""
    if key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, sent = header.partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(sent.strip().encode(), key.encode()):
        raise APIError(
            401, "Incorrect API key provided.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes without reading past it."""
    too_big = APIError(413, f"Request body is larger than this server's limit of {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class ConcurrencyGate:
    """Admits at most `limit` requests at once; the rest are refused, not queued."""

    def __init__(self, limit: int, in_flight: Gauge | None = None) -> None:
        self.limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._gauge = in_flight

    @property
    def active(self) -> int:
        return self._active

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self._active >= self.limit:
                return False
            self._active += 1
        if self._gauge is not None:
            self._gauge.inc()
        return True

    def acquire_or_429(self) -> None:
        """Take a slot or raise a 429 `APIError` carrying Retry-After."""
        if not self.try_acquire():
            raise APIError(
                429,
                f"The server is busy ({self.limit} requests in progress); retry after "
                f"{RETRY_AFTER_SECONDS} s.",
                type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    def release(self) -> None:
        with self._lock:
            if self._active == 0:
                raise RuntimeError("ConcurrencyGate.release without a matching acquire")
            self._active -= 1
        if self._gauge is not None:
            self._gauge.dec()
