"""Right-padding collator for prepared rows (`input_ids`, `labels`, optional `position_ids` and
`weight`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE = -100
"""Label of a token that carries no loss."""


@dataclass(frozen=True)
class PadCollator:
    """Pad a list of rows to the longest one, on the right.

    `input_ids` are padded with `pad_id`, `labels` with -100. Rows without `position_ids` get an
    `attention_mask` (0 on padding). Packed rows carry `position_ids` that restart at 0 for each example;
    for them no attention mask is passed, so transformers derives the per-example (block-diagonal) causal
    mask from the restarts, and the padding tail gets positions 0, 1, ... of its own: a separate
    "sequence" no real token attends to, with no label.
    """

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # deferred: torch only when this runs (keeps `import lmtune...` light)
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        packed = "position_ids" in rows[0]
        input_ids, labels, extra = [], [], []
        for r in rows:
            n = len(r["input_ids"])
            if len(r["labels"]) != n:
                raise ValueError(f"row has {n} input_ids but {len(r['labels'])} labels")
            pad = longest - n
            input_ids.append([*r["input_ids"], *[self.pad_id] * pad])
            labels.append([*r["labels"], *[IGNORE] * pad])
            if packed:
                extra.append([*r["position_ids"], *range(pad)])
            else:
                extra.append([1] * n + [0] * pad)
        batch = {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
        batch["position_ids" if packed else "attention_mask"] = torch.tensor(extra, dtype=torch.long)
        if "weight" in rows[0]:  # class-weighted loss (`lmtune.train.weighted`)
            batch["weight"] = torch.tensor([float(r["weight"]) for r in rows], dtype=torch.float32)
        return batch
