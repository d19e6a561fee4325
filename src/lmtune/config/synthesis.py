"""Settings of `lmtune data synthesize`: self-instruct generation from seed examples through an
OpenAI-compatible endpoint (see docs/data-synthesis.md). Built from the command line's flags."""

from typing import Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.config.curation import CurationConfig, ExactDedupConfig, NearDedupConfig, QualityConfig
from lmtune.config.data import SftFormat

SYNTHESIS_CURATION = CurationConfig(
    exact_dedup=ExactDedupConfig(enabled=True, text="prompts"),
    near_dedup=NearDedupConfig(enabled=True, text="prompts", threshold=0.7),
    quality=QualityConfig(enabled=True),
)
"""Curation of generated records unless a run config's `data.curation` is given: an instruction equal to
(or, Jaccard >= 0.7, close to) a seed's or an earlier generated one's is removed, as Self-Instruct
removes instructions too close to the pool; quality filters and PII scrubbing as in the data stage."""


class SynthesisConfig(StrictModel):
    """One synthesis run: where the seeds come from, the endpoint asked, and what is written."""

    seeds: str
    """Seed examples: a file, a saved folder or a data alias, as a `data.sources` path."""
    format: SftFormat = "messages"
    """How the seed records are shaped (`alpaca`, `messages` or `prompt_completion`; `text` has no
    instruction to show)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Map from the format's field name to the seeds' name for it, e.g. `{prompt: question}`."""
    endpoint: str
    """Base URL of an OpenAI-compatible API (e.g. `http://127.0.0.1:8000/v1`); requests go to
    `<endpoint>/chat/completions`."""
    model: str
    """The `model` sent with each request."""
    api_key_env: str | None = None
    """Environment variable holding the API key sent as a bearer token (None: no key sent)."""
    n: int = Field(ge=1)
    """Requests to make (request indices 0..n-1); each asks for one new example."""
    out: str
    """Output JSONL of accepted records. Next to it: `<stem>.requests.jsonl` (every finished request,
    the resume log), `<stem>.state.json` (settings and summary) and `<stem>.rejects.jsonl`."""
    out_format: Literal["messages", "prompt_completion"] = "messages"
    """Shape of the written records; both carry a `provenance` object."""
    shots: int = Field(default=3, ge=1)
    """Seed examples shown in each request, sampled without replacement (all seeds when fewer)."""
    seed: int = 0
    """Seeds each request's choice of examples and the `seed` sent with it (request i draws from
    `Random("<seed>:<i>")`, so a resumed run asks exactly what the first run would have)."""
    temperature: float = Field(default=1.0, ge=0, le=2)
    """Sampling temperature sent with each request."""
    max_tokens: int = Field(default=512, ge=1)
    """`max_tokens` sent with each request; a completion cut off there is rejected as `truncated`."""
    rps: float | None = Field(default=None, gt=0)
    """Requests started per second at most, retries included (None: no limit)."""
    concurrency: int = Field(default=1, ge=1)
    """Requests in flight at once."""
    max_retries: int = Field(default=5, ge=0)
    """Retries of one request after a 429, a 5xx or a lost connection (waiting `Retry-After` when the
    server sends it, else 1, 2, 4, ... s up to 30 s); then the run stops (re-run to resume)."""
    timeout_s: float = Field(default=300.0, gt=0)
    """Seconds to wait for one response."""
    curation: CurationConfig = SYNTHESIS_CURATION
    """Filters applied to the generated records, against the seeds and each other (`curate`, as in the
    data stage)."""
