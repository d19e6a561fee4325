"""Curation settings (`data.curation`): the steps run on the read records before they are tokenised.

Order: quality filters -> exact dedup -> near-dup -> decontamination -> PII. Each step can be turned off;
a record removed by a step goes to the rejects file with that step's reason.
"""

from typing import Annotated, Literal

from pydantic import Field

from lmtune.config.base import StrictModel

CurationText = Literal["conversation", "prompts", "responses"]
"""Which turns a step looks at: every turn, the user/system turns only, or the assistant turns only."""

PiiType = Literal["EMAIL", "PHONE", "CARD", "IBAN", "IP", "SSN", "SECRET"]
"""Kinds of personal data and secrets the PII step finds."""
PII_TYPES: tuple[PiiType, ...] = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "SSN", "SECRET")


class ExactDedupConfig(StrictModel):
    """Remove records whose normalised text equals an earlier record's (reason `duplicate`)."""

    enabled: bool = False
    """Run this step (off by default: a file may repeat records on purpose, to weight them)."""
    text: CurationText = "conversation"
    """The turns compared."""


class NearDedupConfig(StrictModel):
    """Remove records whose shingle-set Jaccard similarity with an earlier kept record reaches
    `threshold` (reason `near_duplicate`), found with MinHash LSH (datasketch) and confirmed exactly."""

    enabled: bool = False
    """Run this step (off by default, like `exact_dedup`)."""
    text: CurationText = "conversation"
    """The turns compared."""
    threshold: float = Field(default=0.8, gt=0, le=1)
    """Jaccard similarity of the shingle sets at or above which a record is a near duplicate."""
    shingle: Literal["chars", "words"] = "chars"
    """Shingle unit, over the normalised text (NFKC, case-folded, punctuation removed, words joined by
    one space): character n-grams (default: a changed word or a swapped sentence touches few of them) or
    word n-grams."""
    shingle_size: int = Field(default=5, ge=1)
    """Characters or words per shingle."""
    num_perm: int = Field(default=128, ge=16)
    """MinHash permutations: more finds candidates more reliably and costs more time."""
    seed: int = 1
    """MinHash seed (the result does not depend on the run seed)."""


class PiiConfig(StrictModel):
    """Find e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod 97), IPv4/IPv6 addresses,
    US social security numbers and secrets (cloud keys, API and bearer tokens, private key blocks)."""

    enabled: bool = True
    """Run this step (on by default: personal data and secrets should not be trained into a model)."""
    action: Literal["replace", "drop"] = "replace"
    """`replace`: each finding becomes a typed placeholder and the record is kept (counts per type go to
    stats.json); `drop`: a record with any finding goes to the rejects file with reason `pii`."""
    types: list[PiiType] = Field(default_factory=lambda: list(PII_TYPES))
    """The kinds looked for."""
    placeholder: str = "<{type}>"
    """Replacement text; `{type}` becomes the kind (EMAIL, PHONE, CARD, IBAN, IP, SSN, SECRET)."""


class EvalSetConfig(StrictModel):
    """An evaluation set that training data must not overlap."""

    name: str
    """Name used in reject details and stats."""
    path: str
    """Same as a data source: a file, a saved folder, or an alias such as `gsm8k`."""
    format: Literal["alpaca", "messages", "prompt_completion", "text"] = "messages"
    """How each record is shaped (as for `data.sources`)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Map from the format's field name to the name used in the file, e.g. `{prompt: question}`."""
    split: str | None = None
    """For a saved `datasets.DatasetDict` folder: which split to read."""


class DecontamConfig(StrictModel):
    """Remove training records that share a word n-gram with an evaluation set (reason `contaminated`).
    Runs only when `eval_sets` is not empty."""

    eval_sets: list[EvalSetConfig] = Field(default_factory=list)
    """Evaluation sets to protect; every turn of their records is indexed."""
    ngram: int = Field(default=13, ge=1)
    """Words per n-gram (of the normalised text). An eval record shorter than this is not indexed."""
    text: CurationText = "conversation"
    """The turns of a training record that are checked."""


class QualityConfig(StrictModel):
    """Heuristic filters, each with its own reject reason. Token length is checked at encoding
    (`data.max_length`, reason `too_long`); these bounds are in characters."""

    enabled: bool = False
    """Run these filters (off by default: they judge content; turn on and tune the thresholds)."""
    min_response_chars: int = Field(default=1, ge=0)
    """Assistant text (all assistant turns, stripped) shorter than this: `too_short`. For `text`
    records the whole text is the response."""
    max_chars: int | None = Field(default=200_000, ge=1)
    """Whole record (all turns) longer than this many characters: `too_long_chars`; None: no bound."""
    max_duplicate_ngram_fraction: float | None = Field(default=0.5, gt=0, le=1)
    """Share of the response's word n-grams (`repetition_ngram` words) that repeat an earlier n-gram of
    the same response, above which the record is `repetitive` (checked from 20 words on); None: off."""
    repetition_ngram: int = Field(default=3, ge=1)
    """Words per n-gram for `max_duplicate_ngram_fraction`."""
    max_repeated_line_fraction: float | None = Field(default=0.5, gt=0, le=1)
    """Share of the response's non-empty lines taken by its most frequent line, above which the record
    is `repetitive` (checked from 4 lines on); None: off."""
    boilerplate: bool = True
    """Reject responses that are a refusal or an AI disclaimer ("As an AI language model", "I cannot
    help with that", ...) as `boilerplate`."""
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(default_factory=list)
    """ISO 639-1 codes of the languages kept (e.g. `[en]`); others are `wrong_language`. Empty: no
    language filter. Detected offline with lingua."""
    language_min_chars: int = Field(default=40, ge=1)
    """Records whose checked text is shorter than this many characters are not judged (detection is
    unreliable on short texts)."""
    language_text: CurationText = "conversation"
    """The turns whose language is checked."""


class CurationConfig(StrictModel):
    """`data.curation`: dedup, decontamination, quality filters and PII scrubbing before tokenisation."""

    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    decontamination: DecontamConfig = Field(default_factory=DecontamConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
