"""Stage 2 settings: which model to load and how."""

from typing import Literal

from lmtune.config.base import StrictModel


class ModelConfig(StrictModel):
    """The base model."""

    path: str = "smollm2-135m-instruct"
    """A local folder, a hub id (only used when online), or a packaged alias: `smollm2-135m-instruct`
    (real SmolLM2-135M-Instruct, offline) or `tiny` (a tiny random Llama for smoke runs)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype when loading."""
    trust_remote_code: bool = False
    """Allow code shipped with a hub model to run. Off unless you trust its source."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when `path` is a hub id."""
