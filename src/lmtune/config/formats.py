"""Export formats: each a tagged config joined in one discriminated union; the export stage saves and
reloads each through one exhaustive `match` (`lmtune.export.formats`). Today's formats are the merged
standard folder and the adapter alone; `export.merge` chooses between them (`chosen_format`)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from lmtune.config.base import StrictModel
from lmtune.config.combinations import merge_refusal
from lmtune.config.methods import AnyMethod
from lmtune.config.model import Quantization


class FormatBase(StrictModel):
    """Base of every export format config."""

    type: str
    folder: ClassVar[str]
    """The folder under `<run>/export/` the format writes."""
    standalone: ClassVar[bool]
    """Whether the export loads with transformers alone (no PEFT, no base model beside it)."""


class MergedFormat(FormatBase):
    """The trained weights folded into the base: a standard transformers folder (safetensors, tokenizer
    with its chat template, generation config)."""

    type: Literal["merged"] = "merged"
    folder: ClassVar[str] = "merged"
    standalone: ClassVar[bool] = True


class AdapterFormat(FormatBase):
    """The adapter alone, in its method's standard layout (PEFT's for the PEFT methods), loaded on top
    of the base model."""

    type: Literal["adapter"] = "adapter"
    folder: ClassVar[str] = "adapter"
    standalone: ClassVar[bool] = False


AnyFormat = MergedFormat | AdapterFormat
FormatConfig = Annotated[AnyFormat, Field(discriminator="type")]


def chosen_format(merge: bool | None, method: AnyMethod, quantization: Quantization) -> AnyFormat:
    """The format `export.merge` asks for: merged whenever the run can merge and `merge` is not false
    (an explicit true that cannot be honoured is refused when the config loads)."""
    if merge is not False and merge_refusal(method, quantization) is None:
        return MergedFormat()
    return AdapterFormat()
