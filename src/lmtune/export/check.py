"""The export check: the exported folder must answer fixed prompts exactly as the in-memory model did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lmtune.data.prepare import load_prepared
from lmtune.errors import DataError, LmtuneError
from lmtune.runtime.generation import Completion, Message
from lmtune.runtime.records import ExportCheckRecord, GenerationRecord
from lmtune.runtime.rundir import RunDir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

BUILTIN_PROMPTS: tuple[list[Message], ...] = (
    [
        {
            "role": "user",
            "content": "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
            "clips in May. How many clips did Natalia sell altogether in April and May?",
        }
    ],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Explain in one sentence what a neural network is."}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hi!"}],
)
"""Used when the run has no prepared eval split (or too few examples in it)."""


class ExportCheckError(LmtuneError):
    """The exported folder does not reproduce the in-memory model's greedy outputs."""


@dataclass(frozen=True)
class ExportCheck:
    """Greedy outputs before export (in memory) and after (reloaded from disk)."""

    prompts: list[str]
    before: list[Completion]
    after: list[Completion]
    max_logit_diff: float | None
    """Largest |logit difference| over the prompt + answer tokens; None when no prompt was checked."""
    contract_differences: list[str] = field(default_factory=list)
    """How the export's serving contract (chat template, EOS/pad/stop tokens, generation config)
    differs from training's (`lmtune.export.contract`); empty when it is kept."""
    serving: dict[str, Any] | None = None
    """The export's serving contract."""

    @property
    def identical(self) -> bool:
        """Whether every output matches token for token."""
        return [g.token_ids for g in self.before] == [g.token_ids for g in self.after]

    def record(self) -> ExportCheckRecord:
        """What `export_check.json` holds."""

        def gens(items: list[Completion]) -> list[GenerationRecord]:
            return [GenerationRecord(text=g.text, token_ids=g.token_ids) for g in items]

        return ExportCheckRecord(
            prompts=self.prompts,
            before=gens(self.before),
            after=gens(self.after),
            identical=self.identical,
            max_logit_diff=self.max_logit_diff,
            serving=self.serving,
            contract_differences=self.contract_differences,
        )

    def failure(self) -> str:
        """A one-line description of the first differing output."""
        for i, (b, a) in enumerate(zip(self.before, self.after, strict=True)):
            if b.token_ids != a.token_ids:
                return (
                    f"prompt {i}: before export {b.text!r}, after reload {a.text!r} "
                    f"(max logit difference {self.max_logit_diff:.3g})"
                )
        return "outputs are identical"


def check_conversations(rundir: RunDir, count: int) -> list[list[Message]]:
    """The first `count` eval prompts (all turns but the reference answer), topped up with built-ins."""

    try:
        rows = load_prepared(rundir).eval
    except DataError:
        rows = []
    held_out = [[{"role": m["role"], "content": m["content"]} for m in r["messages"][:-1]] for r in rows]
    held_out = [m for m in held_out if m][:count]
    return held_out + list(BUILTIN_PROMPTS[: count - len(held_out)])


def scored_conversations(rundir: RunDir, count: int) -> list[list[Message]]:
    """The first `count` eval conversations whole (prompt and reference answer), for perplexity; the
    built-in prompts when the run has no eval split."""
    try:
        rows = load_prepared(rundir).eval
    except DataError:
        rows = []
    whole = [[{"role": m["role"], "content": m["content"]} for m in r["messages"]] for r in rows]
    return [m for m in whole if m][:count] or list(BUILTIN_PROMPTS[:count])


def sequence_logits(model: PreTrainedModel, sequences: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Logits of each token sequence, one unpadded forward each (float32, on CPU)."""
    # deferred: torch only when this runs (keeps `import lmtune...` light)
    import torch

    device = next(model.parameters()).device
    out = []
    for ids in sequences:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([list(ids)], device=device)).logits[0]
        out.append(logits.float().cpu())
    return out


def max_abs_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float | None:
    """Largest elementwise |a - b| over paired tensors; None for no pairs."""
    diffs = [float((x - y).abs().max()) for x, y in zip(a, b, strict=True)]
    return max(diffs) if diffs else None
