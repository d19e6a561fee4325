"""Serving back-ends: each a tagged config joined in one discriminated union; the server opens the one
the config names through one exhaustive `match` (`lmtune.serve.backends.open_engine`), and talks to it
only through the `Engine` protocol (`lmtune.serve.engine`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from lmtune.config.base import StrictModel


class TransformersBackend(StrictModel):
    """transformers' `generate` on one model folder, one generation at a time (CUDA when present, else
    CPU in float32)."""

    type: Literal["transformers"] = "transformers"


AnyBackend = TransformersBackend
BackendConfig = Annotated[AnyBackend, Field(discriminator="type")]
