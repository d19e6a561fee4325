"""The OpenAI chat-completions wire format: strict request models, OpenAI-style errors, response bodies.

Requests are validated strictly (no type coercion, unknown fields refused) and every problem becomes
an `APIError` whose body is `{"error": {"message", "type", "param", "code"}}`, the shape OpenAI
clients parse.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256  # stop strings are matched after every token: keep that cheap
TEXT_PARTS_ONLY = 'content parts must be {"type": "text", "text": "..."}; only text is supported'


class APIError(Exception):
    """An HTTP error answered with an OpenAI-style JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ChatMessage(_Wire):
    """One message; `content` is a string or a list of `{"type": "text", "text": ...}` parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
            if not isinstance(text, str):
                raise ValueError(TEXT_PARTS_ONLY)
            texts.append(text)
        return "".join(texts)

    def template_dict(self) -> dict[str, str]:
        """The message as chat templates expect it (`developer` is the newer name for `system`)."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.content}


class StreamOptions(_Wire):
    include_usage: bool = False
    """Send a last chunk (empty `choices`) carrying `usage`."""


class ChatCompletionRequest(_Wire):
    """Body of POST /v1/chat/completions (the subset this server implements)."""

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    stop: tuple[str, ...] = ()
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("must contain at least one message")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise ValueError("must be a non-empty string or a list of non-empty strings")
        if len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {len(value)}")
        if any(len(s) > MAX_STOP_CHARS for s in value):
            raise ValueError(f"each stop sequence may be at most {MAX_STOP_CHARS} characters")
        return tuple(value)

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("only 0 is supported by this server")
        return value

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def _param(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _validation_error(exc: ValidationError) -> APIError:
    err = exc.errors(include_url=False)[0]
    param = _param(tuple(err["loc"]))
    kind = err["type"]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif kind == "value_error":
        message = f"Invalid value for '{param}': {err['ctx']['error']}"
    elif kind.endswith("_type"):
        message = f"Invalid type for '{param}': {err['msg']}"
    else:
        message = f"Invalid value for '{param}': {err['msg']}"
    return APIError(400, message, param=param)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object.

    Raises:
        APIError: 400 when the body is not valid UTF-8 JSON or not an object.
    """
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise APIError(400, f"We could not parse the JSON body of your request: {exc}") from None
    except RecursionError:
        raise APIError(400, "We could not parse the JSON body of your request: nested too deeply.") from None
    if not isinstance(obj, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:  # "\ud800" escapes decode to lone surrogates, which no tokenizer or UTF-8 response can carry
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "The request body contains an unpaired Unicode surrogate escape.") from None
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_chat_request(obj: dict[str, Any]) -> ChatCompletionRequest:
    """Validate a decoded body. Raises `APIError` (400) naming the first offending parameter."""
    try:
        return ChatCompletionRequest.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A `chat.completion` object with one choice."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk_body(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, str] | None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A `chat.completion.chunk`; `delta=None` gives the usage-only chunk with no choices."""
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    body["choices"] = [] if delta is None else [choice]
    if usage_ is not None:
        body["usage"] = usage_
    return body


def sse(data: dict[str, Any] | str) -> str:
    """One Server-Sent Event carrying `data` (JSON-encoded unless already a string)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"
