"""Benchmark support (not product code): train through lmtune's own training entry (`lmtune.train.sft.run`,
what `lmtune train` runs) on the batches a benchmark chose, in the benchmark's order, and check what the
Trainer fed.

transformers' Trainer shuffles the training split with accelerate's `SeedableRandomSampler`, seeded
with `data_seed` (lmtune passes the run's `seed`); its first epoch is a seeded permutation of the rows.
`trainer_layout` places the rows so that this shuffle yields them in a chosen order. `FedBatches`, a
Trainer callback given to `sft.run(cfg, callbacks=[...])`, records every training forward's input ids
and loss, so a benchmark can check that the batches were the planned ones (`as_planned`) instead of
assuming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from transformers import TrainerCallback

T = TypeVar("T")


def trainer_layout(items: Sequence[T], seed: int) -> list[T]:
    """`items` reordered so that the Trainer's seeded shuffle of the first epoch (accelerate's
    `SeedableRandomSampler` with `data_seed=seed`) yields them in their given order."""
    from accelerate.data_loader import SeedableRandomSampler

    order = list(SeedableRandomSampler(data_source=range(len(items)), data_seed=seed))
    laid: list[Any] = [None] * len(items)
    for k, index in enumerate(order):
        laid[index] = items[k]
    return laid


def batches_of(rows: Sequence[T], batch_size: int) -> list[list[T]]:
    """`rows` cut into consecutive batches (the last may be short), as the Trainer's loader cuts them."""
    return [list(rows[s : s + batch_size]) for s in range(0, len(rows), batch_size)]


class FedBatches(TrainerCallback):  # type: ignore[misc]
    """Through hooks on the model the Trainer trains (attached at the start of training, removed at
    its end): every training forward's input ids, its rows cut at the attention mask (right padding),
    and its loss. Also the trainable parameters at the start."""

    def __init__(self) -> None:
        self.fed: list[tuple[Any, Any]] = []
        self.losses: list[Any] = []
        self.trainable_params = 0
        self.trainable_dtypes: list[str] = []
        self._handles: list[Any] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs["model"]
        params = [p for p in model.parameters() if p.requires_grad]
        self.trainable_params = sum(p.numel() for p in params)
        self.trainable_dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
        self._handles = [
            model.register_forward_pre_hook(self._inputs, with_kwargs=True),
            model.register_forward_hook(self._loss),
        ]

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _inputs(self, module: Any, args: Any, kwargs: Any) -> None:
        if module.training:
            mask = kwargs.get("attention_mask")
            self.fed.append((kwargs["input_ids"].detach(), None if mask is None else mask.detach()))

    def _loss(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self.losses.append(output.loss.detach())

    def rows(self) -> list[list[list[int]]]:
        """Per training step, the rows fed, without their padding."""
        out = []
        for ids, mask in self.fed:
            lengths = [len(r) for r in ids.tolist()] if mask is None else mask.sum(dim=1).tolist()
            out.append([row[:n] for row, n in zip(ids.cpu().tolist(), lengths, strict=True)])
        return out

    def as_planned(self, planned: Sequence[Sequence[Sequence[int]]]) -> bool:
        """Whether the Trainer fed exactly `planned` (per step, the rows' input ids), in that order."""
        return self.rows() == [[list(row) for row in batch] for batch in planned]

    def loss_values(self) -> list[float]:
        return [float(loss) for loss in self.losses]
