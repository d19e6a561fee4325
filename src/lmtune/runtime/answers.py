"""Answer extraction as small pure functions, shared by the verifiable rewards (alignment) and the
evaluation metrics.

GSM8K-style references end in `#### <number>`. A reference's answer is the number after `####` (or
the whole reference when it is just a number); a prediction's answer is the number after its last
`####` when present, else the last number in the text. Numbers compare after normalisation: commas,
`$` and trailing zero decimals removed (`$1,234.00` == `1234`). Any other reference is compared as
normalised text (case, surrounding whitespace, inner runs of whitespace, final punctuation).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# A minus only counts when it does not join two tokens ("3-4" is 3 and 4); commas only as thousands
# groups ("1,2,3" is three numbers); a final "." without digits is sentence punctuation.
_NUMBER = r"(?:(?<![\w-])-)?\$?(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?"
NUMBER_RE = re.compile(_NUMBER)
FORMAT_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_WS = re.compile(r"\s+")


def normalize_number(text: str) -> str | None:
    """Canonical form of one number: no `$`, no commas, no trailing zero decimals, `-0` is `0`.

    Returns None when `text` is not a number.
    """
    cleaned = text.strip().replace(",", "").replace("$", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def numbers_in(text: str) -> list[str]:
    """Every number in `text`, normalised, in order."""
    found = (normalize_number(m.group(0)) for m in NUMBER_RE.finditer(text))
    return [n for n in found if n is not None]


def reference_answer(reference: str) -> str | None:
    """The numeric answer of a reference: the number after its last `####`, or the reference itself
    when it is a bare number. None means the reference is not numeric (compare as text)."""
    marked = FORMAT_RE.findall(reference)
    if marked:
        return normalize_number(marked[-1])
    stripped = reference.strip().rstrip(".")
    whole = NUMBER_RE.fullmatch(stripped)
    return normalize_number(whole.group(0)) if whole else None


def predicted_answer(prediction: str) -> str | None:
    """The numeric answer of a prediction: the number after its last `#### `, else its last number."""
    marked = FORMAT_RE.findall(prediction)
    if marked:
        return normalize_number(marked[-1])
    numbers = numbers_in(prediction)
    return numbers[-1] if numbers else None


def has_answer_format(text: str) -> bool:
    """Whether `text` states its answer as `#### <number>`."""
    return FORMAT_RE.search(text) is not None


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no surrounding whitespace or final `.`, `!`, `?`."""
    return _WS.sub(" ", text).strip().rstrip(".!?").strip().lower()
