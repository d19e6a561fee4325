"""Pack tokenised examples into rows of at most `max_length` tokens, keeping examples apart.

Each example is placed whole (next-fit, in order: deterministic and order preserving) and gets
`position_ids` restarting at 0, which is how padding-free attention (flash-attention varlen, or
transformers' `DataCollatorWithFlattening`) knows where one sequence ends and the next begins.
The label of the first token of every packed example is set to -100: in the shifted causal loss that
label would be predicted from the previous example's last token, a prediction across examples.
(Unpacked, the first label is never used by the shifted loss, so this loses nothing.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lmtune.data.encoding.template import IGNORE


@dataclass
class PackedRow:
    """One packed row: the concatenated examples and the index of each example it holds."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    members: list[int] = field(default_factory=list)

    def add(self, index: int, input_ids: Sequence[int], labels: Sequence[int]) -> None:
        self.input_ids.extend(input_ids)
        self.labels.extend([IGNORE, *labels[1:]] if input_ids else [])
        self.position_ids.extend(range(len(input_ids)))
        self.members.append(index)


def pack(
    input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], max_length: int
) -> list[PackedRow]:
    """Pack examples in order into rows of at most `max_length` tokens; no token is dropped.

    Raises:
        ValueError: an example is longer than `max_length` (truncation must have run first).
    """
    rows: list[PackedRow] = []
    current = PackedRow()
    for i, (ids, labs) in enumerate(zip(input_ids, labels, strict=True)):
        if len(ids) > max_length:
            raise ValueError(f"example {i} has {len(ids)} tokens, more than max_length={max_length}")
        if current.input_ids and len(current.input_ids) + len(ids) > max_length:
            rows.append(current)
            current = PackedRow()
        current.add(i, ids, labs)
    if current.input_ids:
        rows.append(current)
    return rows
