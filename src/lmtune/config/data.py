"""Stage 1 settings: where records come from, how they are read, templated, truncated and split."""

from difflib import get_close_matches
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from lmtune.config.base import StrictModel
from lmtune.config.curation import CurationConfig

SftFormat = Literal["alpaca", "messages", "prompt_completion", "text"]
"""Formats that become one conversation for supervised fine-tuning (`data.sources`)."""
AlignFormat = Literal["preference", "kto", "prompt"]
"""Formats for alignment (`align.data.sources`): preference pairs, KTO examples, prompts for online RL."""
RecordFormat = Literal[SftFormat, AlignFormat]

CHAT_TEMPLATE_FAMILIES = ("chatml", "llama3", "gemma", "mistral")
"""Chat templates known by name (`data.chat_template`); their Jinja text and special tokens are in
`lmtune.runtime.chat_templates`."""
JINJA_SUFFIXES = (".jinja", ".jinja2", ".j2")
"""File suffixes that mark `data.chat_template` as a Jinja file (so does a path separator)."""


class SourceConfig(StrictModel):
    """One data source."""

    path: str
    """A JSONL/JSON/CSV/Parquet file, a folder saved by `datasets.save_to_disk`, or a packaged alias
    (`gsm8k`: GSM8K's 1,319 test problems; `chatterbot`: the English chatterbot corpus; `gsm8k_pairs`:
    one preference pair per GSM8K problem, as `lmtune data pairs gsm8k` builds them;
    `gsm8k_answer_pairs`: the same with only the rejected answer's `#### N` line changed, as
    `--corruption answer` builds them)."""
    format: RecordFormat = "messages"
    """How each record is shaped: `alpaca` (instruction/input/output), `messages` (OpenAI role/content
    or ShareGPT from/value), `prompt_completion`, or `text` (plain text, trained on every token); for
    alignment sources: `preference` (prompt/chosen/rejected), `kto` (prompt/completion/label) or
    `prompt` (prompt, optional reference answer)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Map from the format's field name to the name used in the file, e.g. `{prompt: question}`."""
    split: str | None = None
    """For a saved `datasets.DatasetDict` folder: which split to read."""
    limit: int | None = Field(default=None, ge=1)
    """Read at most this many records (after validation), for quick runs."""
    weight: float | None = Field(default=None, gt=0)
    """Relative share of this source in the train split; set on every source or on none. E.g. weights
    3 and 1 make 75% / 25% of the train split (its size: `data.mixture.size`, default as read)."""


class MixtureConfig(StrictModel):
    """Source mixing and label balancing, applied to the train split only (eval keeps the data as read).

    See docs/data-report.md: sources are mixed first (per-source `weight`, or `temperature`), then labels
    are balanced; every choice is seeded by the run's `seed`.
    """

    temperature: float | None = Field(default=None, gt=0)
    """Temperature sampling of sources: source i gets a share p_i ∝ n_i^(1/T) (T=1: as read; larger T:
    closer to uniform). Not together with per-source `weight`."""
    size: int | Literal["total", "largest"] = "total"
    """Train records after mixing: a count, `total` (as many as before), or `largest` (the size at which
    the largest source is used exactly once; smaller sources are over-sampled to their share)."""
    label_field: str | None = None
    """A top-level field of each record (as written in the file) holding its label, e.g. a
    classification target; records without it are kept as they are and counted as `(missing)`."""
    label_strategy: Literal["none", "oversample", "undersample"] = "none"
    """`oversample` repeats records of small labels, `undersample` drops records of large labels, until
    every label has at least `label_ratio` times the largest label's count (oversample) or the
    smallest label's count is at least `label_ratio` times every label's count (undersample)."""
    label_ratio: float = Field(default=1.0, gt=0, le=1)
    """Target smallest:largest label ratio after balancing (1: equal counts)."""
    class_weights: bool = False
    """Weight each train example's loss by its label's class weight (inverse frequency in the final
    train split, normalised to a mean of 1 per record; written to stats.json `mixture.class_weights`
    and to a `weight` column of the train split; needs `label_field`, not with `packing`)."""


class DataConfig(StrictModel):
    """Stage 1: sources -> validated records -> chat template + loss mask -> train/eval split."""

    sources: list[SourceConfig] = Field(default_factory=list)
    """The sources, concatenated in order."""
    system_prompt: str | None = None
    """A system message prepended to every conversation that has none."""
    chat_template: str | None = None
    """The chat template conversations are rendered with, for a base model whose tokenizer has none (or
    to replace the tokenizer's own): a known family (`chatml`, `llama3`, `gemma`, `mistral`) or the path
    of a Jinja file (ending in .jinja/.j2, or containing a `/`). Special tokens the template writes that
    the tokenizer lacks are added as special tokens and the model's embeddings grow to hold them (LoRA
    then trains their embedding rows too; other adapter methods refuse new tokens); the saved weights
    and the export carry the template and the tokens. None: the tokenizer's own template."""
    max_length: int = Field(default=1024, ge=8)
    """Longest tokenised example, in tokens."""
    truncation: Literal["drop", "truncate"] = "drop"
    """What to do with an example longer than `max_length`: `drop` writes it to the rejects file with
    reason `too_long`; `truncate` cuts tokens from the end (the example keeps any labelled tokens left)."""
    packing: bool = False
    """Pack several examples into one `max_length` row; position ids restart at each example."""
    eval_size: float = Field(default=0.1, ge=0)
    """Held-out part: a fraction of the records when below 1, else a count."""
    num_proc: int | None = Field(default=None, ge=1)
    """Worker processes for tokenisation (None: tokenise in this process)."""
    curation: CurationConfig = Field(default_factory=CurationConfig)
    """Dedup, decontamination, quality filters and PII scrubbing, run on the records of all sources
    before tokenisation (see docs/data-curation.md)."""
    mixture: MixtureConfig | None = None
    """Mix sources by weight or temperature and balance labels in the train split (None: the train split
    is the records as read)."""

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        """A known family name, or something that names a file (the file is read when training)."""
        if value is None or value in CHAT_TEMPLATE_FAMILIES:
            return value
        if "/" in value or "\\" in value or value.lower().endswith(JINJA_SUFFIXES):
            return value
        close = get_close_matches(value.lower(), CHAT_TEMPLATE_FAMILIES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise PydanticCustomError(
            "unknown_chat_template",
            "'{value}' is not a known chat template; {hint}known: {known}, or the path of a Jinja file "
            "(.jinja/.j2)",
            {"value": value, "hint": hint, "known": ", ".join(CHAT_TEMPLATE_FAMILIES)},
        )

    @model_validator(mode="after")
    def _mixture_consistent(self) -> Self:
        """Weights on all sources or none, not with a temperature; label settings need a label field."""
        weighted = [s.weight is not None for s in self.sources]
        reason = None
        if any(weighted) and not all(weighted):
            reason = "data.sources: `weight` is set on some sources but not all; set it on every source"
        elif any(weighted) and self.mixture is not None and self.mixture.temperature is not None:
            reason = "data.mixture.temperature cannot be combined with per-source `weight`; use one"
        elif (
            self.mixture is not None
            and self.mixture.label_field is None
            and (self.mixture.label_strategy != "none" or self.mixture.class_weights)
        ):
            reason = "data.mixture: label_strategy and class_weights need `label_field`"
        elif self.mixture is not None and self.mixture.class_weights and self.packing:
            reason = (
                "data.mixture.class_weights weighs each example's loss; a packed row holds several "
                "examples: set data.packing: false"
            )
        if reason is not None:
            raise PydanticCustomError("invalid_mixture", "{reason}", {"reason": reason})
        return self
