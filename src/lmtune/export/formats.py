"""Save and reload each export format (configs: `lmtune.config.formats`) through one exhaustive
`match`: what a format writes, and the model a user gets back from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from lmtune import methods
from lmtune.config.formats import AdapterFormat, FolderFormat, MergedFormat
from lmtune.weights.load import Tuned, load_full, load_tuned
from lmtune.weights.save import save_folder

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from lmtune.config.run import WeightsSpec


def save_format(fmt: FolderFormat, tuned: Tuned, spec: WeightsSpec, out: Path) -> dict[str, str]:
    """Write the trained model in `fmt` to `out`; returns {weight file name: sha256}."""
    match fmt:
        case MergedFormat():
            return save_folder(methods.merge(tuned.model, spec.method), tuned.tokenizer, out)
        case AdapterFormat():
            return save_folder(tuned.model, tuned.tokenizer, out, spec.method)
        case _:
            assert_never(fmt)


def load_format(fmt: FolderFormat, out: Path, spec: WeightsSpec) -> PreTrainedModel:
    """The model a user loads from what `save_format` wrote (transformers alone for a standalone
    format; the base + the adapter otherwise)."""
    match fmt:
        case MergedFormat():
            return load_full(out, spec.model)
        case AdapterFormat():
            return load_tuned(out, spec).model
        case _:
            assert_never(fmt)
