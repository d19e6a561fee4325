"""Stages 5-7 settings: evaluation, export, serving, monitoring."""

from typing import Literal

from pydantic import Field, field_validator

from lmtune.config.backends import BackendConfig, TransformersBackend
from lmtune.config.base import StrictModel
from lmtune.config.formats import DerivedFormatConfig
from lmtune.config.suites import AnySuite, PerplexitySuite, SuiteConfig, default_suites

Combination = Literal["cat", "linear", "svd"]
Target = Literal["ollama", "vllm", "docker", "k8s"]
"""A deployment target `lmtune export --target` writes files for (see docs/deployment.md)."""
"""How `export.combine` joins LoRA adapters (see docs/methods.md, "Several adapters on one base")."""


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
    general: str | None = "chatterbot"
    """The forgetting check: a general held-out text scored for base and tuned beside the suites, as
    `general/loss` and `general/perplexity` (what fine-tuning may have cost). `chatterbot` (the packaged
    corpus of real English exchanges), or any `source` a `perplexity` suite takes; null: off."""
    general_max_samples: int = Field(default=100, ge=1)
    """Conversations (or text windows) of the general set scored (a seeded sample)."""
    suites: list[SuiteConfig] = Field(default_factory=default_suites, min_length=1)
    """What to measure, in this order (`type`: `perplexity`, `exact_match`, `format_compliance`,
    `generation`). The greedy answers to the held-out prompts are generated once per model, for the
    suites that score them."""

    def all_suites(self) -> list[AnySuite]:
        """`suites`, then the forgetting check's general set (unless off, or a suite is named `general`)."""
        named = {getattr(s, "name", None) for s in self.suites}
        if self.general is None or "general" in named:
            return list(self.suites)
        return [
            *self.suites,
            PerplexitySuite(source=self.general, name="general", max_samples=self.general_max_samples),
        ]

    @field_validator("suites")
    @classmethod
    def _unique_metrics(cls, suites: list[AnySuite]) -> list[AnySuite]:
        seen: set[str] = set()
        for suite in suites:
            twice = seen & set(suite.metric_names())
            if twice:
                first = sorted(twice)[0]
                raise ValueError(
                    f"metric {first!r} is reported by two suites; give the second another `name`"
                )
            seen |= set(suite.metric_names())
        return suites


class CombineSource(StrictModel):
    """One adapter of a weighted combination."""

    path: str
    """A LoRA adapter folder (with adapter_config.json), or a run directory whose `adapter/` is used."""
    weight: float = Field(allow_inf_nan=False)
    """w_i in the combined update sum_i w_i (alpha_i / r_i) B_i A_i; negative subtracts the adapter."""

    @field_validator("weight")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("a weight of 0 leaves the adapter out; drop it from the list instead")
        return value


class CombineConfig(StrictModel):
    """Export a weighted combination of LoRA adapters (trained on this run's base) instead of the run's
    own weights."""

    adapters: list[CombineSource] = Field(min_length=1)
    """The adapters and their weights."""
    combination: Combination = "cat"
    """`cat`: exactly sum_i w_i (alpha_i/r_i) B_i A_i (rank = sum of ranks); `svd`: that sum truncated
    to the largest source rank (best low-rank approximation); `linear`: PEFT's combination of A and B
    separately (same rank, needs one rank; not the weighted sum of updates when mixing several)."""


class ExportConfig(StrictModel):
    """Stage 6a: merged, standard model folder."""

    merge: bool | None = None
    """Fold adapters into the base weights so `export/merged/` loads without PEFT; false: the adapter alone
    is saved to `export/adapter/` (loads with PEFT on top of the base model); none (the default): merge
    whenever the run can (not for prompt/prefix tuning or an int8 base, which export their adapter).
    An explicit true that cannot be honoured is a config error."""
    check_prompts: int = Field(default=4, ge=0)
    """Held-out prompts whose greedy outputs must be identical before and after export (built-in prompts
    fill in when the eval split has fewer); 0 skips the check."""
    check_max_new_tokens: int = Field(default=32, ge=1)
    """Generation budget for the export check."""
    formats: list[DerivedFormatConfig] = Field(default_factory=list)
    """More formats written from the checked merged folder, each with its own check (`type`: `gguf`,
    `bnb`, `torchao`); also `lmtune export RUN --format gguf --quant f16,q8_0`."""
    targets: list[Target] = Field(default_factory=list)
    """Deployment files to write after the export, each into `export/targets/<target>/`: `ollama` (a
    Modelfile), `vllm` (launch scripts, with the LoRA settings of a LoRA run), `docker` (a Dockerfile),
    `k8s` (Deployment, Service, HorizontalPodAutoscaler, API-key Secret). Also `--target` on the CLI."""
    combine: CombineConfig | None = None
    """Export a weighted combination of LoRA adapters instead of the run's own weights (also
    `lmtune export --combine a:0.7,b:0.3 RUN_DIR`); the combined adapter is kept in `export/combined/`."""


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
    backend: BackendConfig = Field(default_factory=TransformersBackend)
    """What generates (`type`: `transformers`, the only back-end today)."""


class MonitorConfig(StrictModel):
    """Stage 7: request store and metrics."""

    db_path: str | None = None
    """SQLite file for served requests; none means `<run>/monitor/requests.sqlite` or next to the model."""
