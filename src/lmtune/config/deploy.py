"""Stages 5-7 settings: evaluation, export, serving, monitoring."""

from pydantic import Field

from lmtune.config.base import StrictModel


class EvaluateConfig(StrictModel):
    """Stage 5: held-out loss and generation metrics, base vs tuned."""

    max_samples: int = Field(default=50, ge=1)
    """Held-out examples to generate answers for."""
    max_new_tokens: int = Field(default=256, ge=1)
    """Generation budget per answer."""
    batch_size: int = Field(default=8, ge=1)
    """Prompts per generation batch."""
    compare_base: bool = True
    """Also evaluate the base model (adapter disabled) so the report shows before and after."""


class ExportConfig(StrictModel):
    """Stage 6a: merged, standard model folder."""

    merge: bool = True
    """Fold adapters into the base weights so `export/merged/` loads without PEFT; off: the adapter alone
    is saved to `export/adapter/` (loads with PEFT on top of the base model)."""
    check_prompts: int = Field(default=4, ge=0)
    """Held-out prompts whose greedy outputs must be identical before and after export (built-in prompts
    fill in when the eval split has fewer); 0 skips the check."""
    check_max_new_tokens: int = Field(default=32, ge=1)
    """Generation budget for the export check."""


class ServeConfig(StrictModel):
    """Stage 6b: the OpenAI-compatible HTTP server."""

    host: str = "127.0.0.1"
    """Interface to bind; keep 127.0.0.1 unless a proxy in front handles auth."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port (0 picks a free one)."""
    model_name: str | None = None
    """Name clients use in `model`; defaults to the served folder's name."""
    api_key_env: str | None = None
    """Name of an environment variable holding the API key clients must send; none means no auth."""
    max_tokens_limit: int = Field(default=1024, ge=1)
    """Largest `max_tokens` a request may ask for."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest request body accepted."""
    max_concurrency: int = Field(default=4, ge=1)
    """Requests handled at once; more get 429 with Retry-After."""
    log_prompts: bool = False
    """Store prompt and completion text in the request log (off: only sizes and timings)."""


class MonitorConfig(StrictModel):
    """Stage 7: request store and metrics."""

    db_path: str | None = None
    """SQLite file for served requests; none means `<run>/monitor/requests.sqlite` or next to the model."""
