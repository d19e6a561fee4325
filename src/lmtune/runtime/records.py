"""The records a run writes and every reader reads, as pydantic models in one place: the lines of
`metrics.jsonl`, `eval/summary.json`, `export/export_check.json` and the request store's rows.

Metrics records keep every number a trainer logs (the models allow extra fields: an alignment trainer
logs `rewards/accuracies`, a MoE model `router_aux_loss`), and name the ones lmtune reads. Records
written by earlier versions still load: the evaluation summary line was written as `{"eval": {...}}`
without a `kind` and is read as `kind: eval_summary`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter


class _Open(BaseModel):
    """A record that keeps fields it does not name (each trainer logs its own numbers)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class TrainLog(_Open):
    """Every `trainer.logging_steps` optimizer steps: the training loss and friends."""

    kind: Literal["train"] = "train"
    step: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None


class EvalLog(_Open):
    """After each evaluation during training: `eval_loss` and the trainer's other `eval_*` numbers."""

    kind: Literal["eval"] = "eval"
    step: int
    epoch: float | None = None
    eval_loss: float | None = None


class TrainSummaryLog(_Open):
    """Once at the end of training: runtime, mean training loss, ..."""

    kind: Literal["train_summary"] = "train_summary"
    step: int
    epoch: float | None = None
    train_runtime: float | None = None


class AlignEvalLog(_Open):
    """An alignment objective's held-out evaluation before (`align_eval_before`) or after training."""

    kind: Literal["align_eval", "align_eval_before"]
    step: int


class MetricComparison(BaseModel):
    """One metric of the base and the tuned model (`eval/summary.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: float | None = None
    tuned: float | None = None
    delta: float | None = None
    ci95: tuple[float, float] | None = None
    """Paired bootstrap 95% interval of delta (absent in results written before intervals)."""
    items: int | None = None
    """Items the interval resamples."""

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0 (None without an interval)."""
        return None if self.ci95 is None else not (self.ci95[0] <= 0 <= self.ci95[1])


class EvalSummaryLog(_Open):
    """`lmtune evaluate`'s summary, also appended to metrics.jsonl."""

    kind: Literal["eval_summary"] = "eval_summary"
    eval: dict[str, MetricComparison]


MetricsRecord = Annotated[
    TrainLog | EvalLog | TrainSummaryLog | AlignEvalLog | EvalSummaryLog, Field(discriminator="kind")
]
_METRICS: TypeAdapter[MetricsRecord] = TypeAdapter(MetricsRecord)


class EvalSummaryFile(RootModel[dict[str, MetricComparison]]):
    """`eval/summary.json`: metric name -> base, tuned, delta."""


class GenerationRecord(BaseModel):
    """One greedy answer as an export check keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    token_ids: list[int]


class ExportCheckRecord(BaseModel):
    """`export/export_check.json`: the greedy answers before export (in memory) and after reload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: list[str]
    before: list[GenerationRecord]
    after: list[GenerationRecord]
    identical: bool
    max_logit_diff: float | None
    serving: dict[str, Any] | None = None
    """The export's serving contract (chat template hash, EOS/pad/stop tokens, generation config);
    absent in checks written before it was recorded."""
    contract_differences: list[str] = []
    """How that contract differs from training's (empty: kept)."""


class RequestRecord(BaseModel):
    """One served request as the request store keeps it (one row)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: float
    """Unix time (seconds) the request arrived."""
    endpoint: str
    """Request path, e.g. `/v1/chat/completions`."""
    status: int
    """HTTP status code sent back."""
    latency_ms: float
    """Arrival to last byte sent (for streams: to `[DONE]`)."""
    model: str | None = None
    """The `model` the request named (None when the body could not be read)."""
    prompt_tokens: int | None = None
    """Tokens in the templated prompt (None when generation did not start)."""
    completion_tokens: int | None = None
    """Tokens generated, the stopping eos token included."""
    stream: bool = False
    """Whether the client asked for Server-Sent Events."""
    finish_reason: str | None = None
    """`stop` or `length` for completed generations, `cancelled` for streams the client left early."""
    error_type: str | None = None
    """OpenAI error type for rejected requests (e.g. `invalid_request_error`)."""
    prompt: str | None = None
    """Prompt messages as JSON — only when prompt logging is on."""
    completion: str | None = None
    """Generated text — only when prompt logging is on."""
    id: int | None = None
    """Row id, set when read back from the store."""


def metrics_record(data: dict[str, Any]) -> MetricsRecord:
    """Validate one metrics.jsonl object (an earlier version's `{"eval": ...}` line included)."""
    if "kind" not in data and "eval" in data:
        data = {"kind": "eval_summary", **data}
    return _METRICS.validate_python(data)


def metrics_line(record: MetricsRecord) -> str:
    """The JSON line of `record`: its `kind`, then the fields it was given (no defaults added)."""
    return json.dumps(
        {"kind": record.kind, **record.model_dump(mode="json", exclude_unset=True)}, default=float
    )


def read_metrics(path: Path) -> Iterator[MetricsRecord]:
    """Every record of a metrics.jsonl file, in order (none when the file does not exist); blank lines
    are skipped."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield metrics_record(json.loads(line))
