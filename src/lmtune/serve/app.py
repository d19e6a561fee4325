"""The OpenAI-compatible HTTP app: `create_app(model_dir, cfg, store)`.

Endpoints: POST /v1/chat/completions (plain or streamed as Server-Sent Events), GET /v1/models,
GET /health, GET /metrics (Prometheus text). Every client mistake is a 4xx with an OpenAI-style error
body; generation runs in a worker thread behind the engine's lock, at most `cfg.max_concurrency`
requests are admitted at once (429 + Retry-After beyond), and `/v1/` requests are metered and stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmtune.config.deploy import ServeConfig
from lmtune.monitor.metrics import CONTENT_TYPE
from lmtune.monitor.store import RequestStore
from lmtune.serve import protocol
from lmtune.serve.backends import open_engine
from lmtune.serve.engine import Completion, Engine, PromptError, SamplingParams
from lmtune.serve.guards import ConcurrencyGate, check_api_key, read_api_key, read_body
from lmtune.serve.protocol import APIError, ChatCompletionRequest
from lmtune.serve.telemetry import Outcome, RecordingMiddleware, ServeMetrics, outcome_of

log = logging.getLogger(__name__)


def _error_response(exc: APIError, outcome: Outcome | None = None) -> JSONResponse:
    if outcome is not None:
        outcome.error_type = exc.type
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def create_app(model_dir: str | Path, cfg: ServeConfig, store: RequestStore | None = None) -> FastAPI:
    """Load the model folder and build the app that serves it.

    Args:
        model_dir: standard model folder (safetensors, tokenizer with chat template, generation_config).
        cfg: limits, auth and naming (see `ServeConfig`).
        store: where each `/v1/` request is recorded; None records nothing (metrics still count).

    Raises:
        ModelLoadError: the folder cannot be served.
        ConfigError: `cfg.api_key_env` names a variable that is not set.
    """
    api_key = read_api_key(cfg)
    engine = open_engine(cfg.backend, model_dir)
    name = cfg.model_name or Path(model_dir).resolve().name
    created = int(Path(model_dir).stat().st_mtime)
    metrics = ServeMetrics()
    gate = ConcurrencyGate(cfg.max_concurrency, metrics.in_flight)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()  # on shutdown, after uvicorn has let the requests in flight finish

    app = FastAPI(title="lmtune", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine = engine
    app.state.gate = gate
    app.state.metrics = metrics
    app.state.model_name = name
    app.add_middleware(RecordingMiddleware, metrics=metrics, store=store)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc, outcome_of(request.scope))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"Unknown request URL: {request.method} {request.url.path}."
            if exc.status_code == 404
            else f"{exc.detail} ({request.method} {request.url.path})."
        )
        err = APIError(exc.status_code, message, headers=dict(exc.headers or {}))
        return _error_response(err, outcome_of(request.scope))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(APIError(400, str(exc.errors()[0]["msg"])), outcome_of(request.scope))

    def authorize(request: Request) -> None:
        check_api_key(request, api_key)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    @v1.get("/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(name, created)]}

    @v1.get("/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != name:
            raise _unknown_model(model_id)
        return _model_card(name, created)

    @v1.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        outcome = outcome_of(request.scope)
        body = protocol.parse_json_object(await read_body(request, cfg.max_body_bytes))
        outcome.model = body["model"][:200] if isinstance(body.get("model"), str) else None
        outcome.stream = body.get("stream") is True
        req = protocol.parse_chat_request(body)
        if req.model != name:
            raise _unknown_model(req.model)
        params = _sampling_params(req, cfg)
        messages = [m.template_dict() for m in req.messages]
        try:
            prompt_ids = await asyncio.to_thread(engine.encode_chat, messages)  # big prompts take a while
        except PromptError as exc:
            raise APIError(400, str(exc), param="messages") from None
        if cfg.log_prompts:
            outcome.prompt = json.dumps(messages, ensure_ascii=False)
        gate.acquire_or_429()
        outcome.cleanups.append(gate.release)
        outcome.prompt_tokens = len(prompt_ids)
        if req.stream:
            include_usage = req.stream_options is not None and req.stream_options.include_usage
            cancel = threading.Event()
            outcome.cleanups.append(partial(_end_stream, outcome, cancel))
            return StreamingResponse(
                _stream(engine, prompt_ids, params, name, include_usage, outcome, cfg.log_prompts, cancel),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        done = await asyncio.to_thread(engine.generate, prompt_ids, params)
        _finish(outcome, done, cfg.log_prompts)
        return JSONResponse(
            protocol.completion_body(
                protocol.completion_id(),
                name,
                done.text,
                done.finish_reason,
                done.prompt_tokens,
                done.completion_tokens,
            )
        )

    app.include_router(v1)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": name, "in_flight": gate.active}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.registry.render(), media_type=CONTENT_TYPE)

    return app


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "lmtune"}


def _unknown_model(requested: str) -> APIError:
    return APIError(
        404,
        f"The model '{requested}' does not exist; this server serves one model (see GET /v1/models).",
        param="model",
        code="model_not_found",
    )


def _sampling_params(req: ChatCompletionRequest, cfg: ServeConfig) -> SamplingParams:
    if req.n != 1:
        raise APIError(400, f"Invalid value for 'n': only n=1 is supported, got {req.n}.", param="n")
    if req.stream_options is not None and not req.stream:
        message = "Invalid value for 'stream_options': only allowed when 'stream' is true."
        raise APIError(400, message, param="stream_options")
    budget = req.token_budget
    field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    if budget is not None and budget > cfg.max_tokens_limit:
        raise APIError(
            400,
            f"Invalid value for '{field}': {budget} is larger than this server's limit of "
            f"{cfg.max_tokens_limit}.",
            param=field,
        )
    return SamplingParams(
        max_new_tokens=budget if budget is not None else cfg.max_tokens_limit,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        seed=req.seed,
    )


def _finish(outcome: Outcome, done: Completion, log_prompts: bool) -> None:
    outcome.completion_tokens = done.completion_tokens
    outcome.finish_reason = done.finish_reason
    if log_prompts:
        outcome.completion = done.text


_END = object()


def _end_stream(outcome: Outcome, cancel: threading.Event) -> None:
    """After the response: stop the generation if the client left early, and say so in the record."""
    cancel.set()
    if outcome.finish_reason is None and outcome.error_type is None:
        outcome.finish_reason = "cancelled"


async def _stream(
    engine: Engine,
    prompt_ids: list[int],
    params: SamplingParams,
    name: str,
    include_usage: bool,
    outcome: Outcome,
    log_prompts: bool,
    cancel: threading.Event,
) -> AsyncIterator[str]:
    """SSE events: a role chunk, content chunks as text becomes final, a finish chunk, `[DONE]`."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[object] = asyncio.Queue()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            cancel.set()

    def work() -> Completion:
        try:
            return engine.generate(prompt_ids, params, on_text=put, cancel=cancel)
        finally:
            put(_END)

    cid, created = protocol.completion_id(), int(time.time())
    job = loop.run_in_executor(None, work)
    yield protocol.sse(protocol.chunk_body(cid, created, name, {"role": "assistant", "content": ""}))
    while (item := await pieces.get()) is not _END:
        yield protocol.sse(protocol.chunk_body(cid, created, name, {"content": str(item)}))
    try:
        done = await job
    except Exception:
        log.exception("generation failed mid-stream")
        outcome.error_type = "server_error"
        yield protocol.sse(APIError(500, "Generation failed.", type="server_error").body())
        return
    _finish(outcome, done, log_prompts)
    yield protocol.sse(protocol.chunk_body(cid, created, name, {}, done.finish_reason))
    if include_usage:
        yield protocol.sse(
            protocol.chunk_body(
                cid, created, name, None, usage_=protocol.usage(done.prompt_tokens, done.completion_tokens)
            )
        )
    yield protocol.sse("[DONE]")
