"""Serving back-ends: each a tagged config joined in one discriminated union; the server opens the one
the config names through one exhaustive `match` (`lmtune.serve.backends.open_engine`), and talks to it
only through the `Engine` protocol (`lmtune.serve.engine`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from lmtune.config.base import StrictModel


class TransformersBackend(StrictModel):
    """transformers on one model folder (CUDA when present, else CPU in float32)."""

    type: Literal["transformers"] = "transformers"
    batching: bool = True
    """Continuous batching (transformers' continuous-batching manager, a paged KV cache per sequence):
    concurrent greedy requests share each forward pass, joining and leaving the running batch as they
    come and finish. Sampled requests, and every request with false, generate one at a time."""
    kv_cache_tokens: int = Field(default=8192, ge=256)
    """Tokens the batch's KV cache holds, all requests together (prompt and answer), allocated once at
    start (SmolLM2-135M: 46 KB a token, 377 MB at the default); requests wait for room beyond it."""
    max_batch_tokens: int = Field(default=512, ge=16)
    """Most tokens one forward pass takes (new prompts are read in chunks of this size)."""


AnyBackend = TransformersBackend
BackendConfig = Annotated[AnyBackend, Field(discriminator="type")]
