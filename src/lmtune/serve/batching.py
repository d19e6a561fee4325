"""Continuous batching for the served model, on transformers' own continuous-batching manager
(`model.init_continuous_batching`: a background thread that runs one forward pass over every active
sequence, each with its own pages of a paged KV cache; requests join the running batch as soon as pages
are free and leave it when they finish or are cancelled).

`Batcher` adds what a server needs around it: one queue per request for the streamed outputs (a router
thread takes the manager's results and hands each to its request), cancelling one request without
touching the others, and a stop that lets in-flight requests finish. `batched_generate` is one
request's life: submit, stream text through the stop-string tracker, cancel on a stop string or a
client that left, and the same `Completion` the one-at-a-time path returns.

Greedy requests go through the batch; a sampled request runs on its own while the batch is held
(`Batcher.paused`: the manager's sampling is per batch, not seeded per request, and two forward passes
of one model must not run at once), see `lmtune.serve.engine.TransformersEngine`.
"""

from __future__ import annotations

import atexit
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lmtune.errors import LmtuneError
from lmtune.runtime.generation import Completion, finish
from lmtune.runtime.stops import TextTracker

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from lmtune.config.backends import TransformersBackend

POLL_SECONDS = 0.05
"""How often a waiting request looks at its cancel event."""
PAGE_TOKENS = 256
"""Tokens per page of the paged KV cache (transformers' default)."""


class BatchingError(LmtuneError):
    """The batching manager failed a request."""


class Batcher:
    """transformers' continuous-batching manager on one model, with per-request result queues."""

    def __init__(
        self,
        model: PreTrainedModel,
        stop_ids: Sequence[int],
        pad_id: int,
        backend: TransformersBackend,
        max_new_tokens: int = 1024,
    ) -> None:
        # deferred: transformers only when this runs (keeps `import lmtune...` light)
        from transformers import ContinuousBatchingConfig, GenerationConfig

        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(stop_ids), pad_token_id=pad_id
        )
        # Sized explicitly: left alone, the manager takes 90% of the free memory for its cache.
        batching = ContinuousBatchingConfig(
            page_size=PAGE_TOKENS,
            num_blocks=-(-backend.kv_cache_tokens // PAGE_TOKENS),
            max_batch_tokens=backend.max_batch_tokens,
        )
        self.stop_ids = list(stop_ids)
        self.manager = model.init_continuous_batching(  # type: ignore[operator]
            generation_config=config, continuous_batching_config=batching
        )
        # Started from a daemon thread, the manager's generation thread is a daemon too (threads inherit
        # it): an engine nobody closed must not keep the interpreter from exiting. `close` stops it cleanly.
        starter = threading.Thread(target=self.manager.start, name="lmtune-batch-start", daemon=True)
        starter.start()
        starter.join()
        atexit.register(self.close)  # stop it cleanly before the interpreter kills daemon threads
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._running = True
        self._router = threading.Thread(target=self._route, name="lmtune-batch-router", daemon=True)
        self._router.start()

    def _route(self) -> None:
        while self._running:
            out = self.manager.get_result(timeout=0.1)
            if out is None:
                continue
            with self._lock:
                box = self._queues.get(out.request_id)
            if box is not None:
                box.put(out)

    def submit(self, prompt_ids: Sequence[int], max_new_tokens: int) -> tuple[str, queue.Queue[Any]]:
        """Add a request to the running batch; returns its id and the queue its outputs arrive on.

        Raises:
            BatchingError: the manager is not accepting requests (stopping, or failed).
        """
        request_id = uuid.uuid4().hex
        box: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._queues[request_id] = box
        added = self.manager.add_request(
            list(prompt_ids),
            request_id=request_id,
            max_new_tokens=max_new_tokens,
            streaming=True,
            eos_token_id=self.stop_ids,
        )
        if added is None:
            self.forget(request_id)
            raise BatchingError("the batching manager is not accepting requests")
        return request_id, box

    def cancel(self, request_id: str) -> None:
        """Stop one request; the others in the batch go on."""
        self.manager.cancel_request(request_id)
        self.forget(request_id)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._queues.pop(request_id, None)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the batch between two forward passes (its requests keep their cache) while the calling
        thread uses the model: two forward passes of one model must not run at once."""
        with self.manager.pause():
            yield

    def close(self) -> None:
        """Stop the manager (after the requests in flight) and the router; a second call does nothing."""
        atexit.unregister(self.close)
        if not self._running:
            return
        self.manager.stop(block=True)
        self._running = False
        self._router.join(timeout=5)


def batched_generate(
    batcher: Batcher,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    stop: Sequence[str],
    on_text: Callable[[str], None] | None,
    cancel: threading.Event | None,
) -> Completion:
    """One greedy request through the batch, streamed as `Generator.generate` streams one row: text is
    handed to `on_text` only once final, a stop string or `cancel` ends the request (and only it)."""
    stops = frozenset(batcher.stop_ids)
    tracker = TextTracker(tokenizer, tuple(stop), stops)
    request_id, box = batcher.submit(prompt_ids, max_new_tokens)
    tokens: list[int] = []
    cancelled = finished = False
    try:
        while not finished:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            try:
                out = box.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if out.error is not None:
                raise BatchingError(f"generation failed: {out.error}")
            tokens = list(out.generated_tokens)
            cut = next((k + 1 for k, t in enumerate(tokens) if t in stops), None)
            if cut is not None:
                tokens, finished = tokens[:cut], True
            delta = tracker.update(tokens)
            if delta and on_text is not None:
                on_text(delta)
            finished = finished or tracker.stopped or out.is_finished()
    finally:
        if finished and not tracker.stopped:
            batcher.forget(request_id)
        else:  # a stop string, a client that left, or an error: take it out of the batch
            batcher.cancel(request_id)
    return finish(tracker, tokens, stops, cancelled, on_text, len(prompt_ids))
