"""Stage 1 settings: where records come from, how they are read, templated, truncated and split."""

from typing import Literal

from pydantic import Field

from lmtune.config.base import StrictModel

SftFormat = Literal["alpaca", "messages", "prompt_completion", "text"]
"""Formats that become one conversation for supervised fine-tuning (`data.sources`)."""
AlignFormat = Literal["preference", "kto", "prompt"]
"""Formats for alignment (`align.data.sources`): preference pairs, KTO examples, prompts for online RL."""
RecordFormat = Literal[SftFormat, AlignFormat]


class SourceConfig(StrictModel):
    """One data source."""

    path: str
    """A JSONL/JSON/CSV/Parquet file, a folder saved by `datasets.save_to_disk`, or a packaged alias
    (`gsm8k`: GSM8K's 1,319 test problems; `chatterbot`: the English chatterbot corpus; `gsm8k_pairs`:
    one preference pair per GSM8K problem, as `lmtune data pairs gsm8k` builds them)."""
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


class DataConfig(StrictModel):
    """Stage 1: sources -> validated records -> chat template + loss mask -> train/eval split."""

    sources: list[SourceConfig] = Field(default_factory=list)
    """The sources, concatenated in order."""
    system_prompt: str | None = None
    """A system message prepended to every conversation that has none."""
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
