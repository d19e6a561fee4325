"""Answer extraction and scoring: the pure functions behind exact match and format compliance."""

from __future__ import annotations

import pytest

from lmtune.evaluate import metrics
from lmtune.runtime import answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234", "1234"),
        ("$5.00", "5"),
        ("-3", "-3"),
        ("2.50", "2.5"),
        ("18.0", "18"),
        ("-0", "0"),
        ("$1,000.50", "1000.5"),
        ("abc", None),
        ("", None),
    ],
)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert answers.normalize_number(text) == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("so the total is 1,234\n#### 1,234", "1234"),
        ("#### $5.00", "5"),
        ("#### -7", "-7"),
        ("#### 3.50", "3.5"),
        ("42", "42"),
        ("42.", "42"),
        ("Paris.", None),
        ("the answer is 3 apples", None),  # a number inside text does not make a numeric reference
    ],
)
def test_reference_answer(reference: str, expected: str | None) -> None:
    assert answers.reference_answer(reference) == expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("4 + 3 = 7\n#### 7", "7"),
        ("#### 1,234 apples, not 5", "1234"),  # the marked answer wins over a later number
        ("first 12 then #### 3 and finally #### 9", "9"),  # the last marked answer
        ("it costs $5.00.", "5"),
        ("the temperature fell to -4 degrees", "-4"),
        ("pages 3-4", "4"),  # a hyphen between numbers is not a minus sign
        ("half is 2.5", "2.5"),
        ("The answer is 18.", "18"),
        ("1,2,3", "3"),  # commas that are not thousands groups separate numbers
        ("no number here", None),
        ("####", None),
    ],
)
def test_predicted_answer(prediction: str, expected: str | None) -> None:
    assert answers.predicted_answer(prediction) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("#### 72", True), ("####-3", True), ("#### $1,234.5", True), ("#### seven", False), ("72", False)],
)
def test_has_answer_format(text: str, expected: bool) -> None:
    assert answers.has_answer_format(text) is expected


def test_numeric_score_compares_normalised_answers() -> None:
    right = metrics.score("1200 + 34 = 1234\n#### 1234", "#### 1,234")
    assert right.correct and right.has_format and right.reference_has_format
    assert (right.reference_answer, right.predicted_answer) == ("1234", "1234")
    # unformatted prediction: the last number counts, and it is wrong here
    wrong = metrics.score("it is 1234 or maybe 1235", "#### 1,234")
    assert not wrong.correct and not wrong.has_format
    assert wrong.predicted_answer == "1235"
    missing = metrics.score("I do not know", "#### 5")
    assert not missing.correct and missing.predicted_answer is None


def test_text_score_is_normalised_exact_match() -> None:
    assert metrics.score("  PARIS!  ", "Paris.").correct
    assert metrics.score("the\n seine", "The Seine").correct
    assert not metrics.score("Paris is the capital", "Paris.").correct
    assert metrics.score("Paris", "Paris").reference_answer is None


def test_aggregates_count_what_they_claim() -> None:
    scores = [
        metrics.score("#### 7", "#### 7"),  # correct, formatted
        metrics.score("seven: 7", "#### 7"),  # correct, unformatted
        metrics.score("#### 8", "#### 7"),  # wrong, formatted
        metrics.score("Paris", "Paris"),  # text reference: excluded from format compliance
    ]
    assert metrics.exact_match(scores) == pytest.approx(3 / 4)
    assert metrics.format_compliance(scores) == pytest.approx(2 / 3)


def test_aggregates_are_none_when_meaningless() -> None:
    assert metrics.exact_match([]) is None
    assert metrics.format_compliance([]) is None
    text_only = [metrics.score("#### 3", "Paris"), metrics.score("Rome", "Rome")]
    assert metrics.format_compliance(text_only) is None
