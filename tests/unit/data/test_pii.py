"""PII scrubbing: measured recall and false-positive rate on the labelled fixture, and the checks that
keep look-alikes (Luhn, IBAN mod 97, SSN ranges, version numbers) out.

tests/fixtures/pii_cases.jsonl is written by tests/fixtures/make_pii_cases.py (seeded; the test below
checks the committed file is what the script writes).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from lmtune.config.curation import PII_TYPES
from lmtune.data.curation import pii

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _cases() -> list[dict]:
    return [
        json.loads(line) for line in (FIXTURES / "pii_cases.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def test_fixture_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_pii_cases", FIXTURES / "make_pii_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.cases == _cases()


def test_recall_and_false_positive_rate_on_the_labelled_fixture(benchmark_module: Any) -> None:
    """Acceptance (issue 6.2): >= 300 labelled cases, recall >= 0.99, false-positive rate <= 1%."""
    cases = _cases()
    negatives = [c for c in cases if not c["expect"]]
    assert len(cases) >= 300 and len(negatives) >= 100
    assert {e["type"] for c in cases for e in c["expect"]} == set(PII_TYPES)
    scores = benchmark_module("curation_support").pii_scores(cases)
    assert scores["recall"] >= 0.99, scores["misses"]
    assert scores["false_positive_rate"] <= 0.01, scores["false_positives"]
    assert all(r >= 0.95 for r in scores["recall_by_type"].values()), scores["recall_by_type"]


def test_hand_written_second_set(benchmark_module: Any) -> None:
    """tests/fixtures/pii_heldout.jsonl: 86 cases written by hand after the patterns (other formats and
    look-alikes). Its first run found 45 of 46 values and flagged 1 of 40 negatives (see
    docs/data-curation.md); the three patterns fixed since are held to it here."""
    lines = (FIXTURES / "pii_heldout.jsonl").read_text(encoding="utf-8").splitlines()
    scores = benchmark_module("curation_support").pii_scores(json.loads(line) for line in lines)
    assert (scores["labelled_values"], scores["negative_cases"]) == (46, 40)
    assert scores["recall"] >= 0.99 and scores["false_positive_rate"] <= 0.01, scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 ok", "card <CARD> ok"),
        ("card 4111 1111 1111 1112 ok", "card 4111 1111 1111 1112 ok"),  # Luhn-invalid: not a card
        ("acct 9111 1111 1111 1111", "acct 9111 1111 1111 1111"),  # Luhn-valid, no issuer starts with 9
        ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN <IBAN>."),
        ("IBAN DE88 3704 0044 0532 0130 00.", "IBAN DE88 3704 0044 0532 0130 00."),  # bad checksum
        ("GB82WEST12345698765432 and GB82WEST1234569876543", "<IBAN> and GB82WEST1234569876543"),  # length
        ("host 1.2.3.4 up", "host <IP> up"),  # a bare dotted quad is an address
        ("net 10.0.0.0/8, host 10.1.2.3/8", "net 10.0.0.0/8, host <IP>/8"),  # a range is not a host
        ("version 1.2.3.4 and v1.2.3.4", "version 1.2.3.4 and v1.2.3.4"),  # written as a version
        ("256.1.1.1 / 1.2.3.4.5 / 10.0.19041.1", "256.1.1.1 / 1.2.3.4.5 / 10.0.19041.1"),
        ("[2001:db8::1]:443 and ::1", "[<IP>]:443 and <IP>"),
        ("12:30:45 00:1A:2B:3C:4D:5E a[::2] std::cout", "12:30:45 00:1A:2B:3C:4D:5E a[::2] std::cout"),
        (
            "SSN 078-05-1120; 000-05-1120; 666-05-1120; 900-05-1120",
            "SSN <SSN>; 000-05-1120; 666-05-1120; 900-05-1120",
        ),
        ("(415) 555-2671, +44 20 7946 0958, 030 12345678", "<PHONE>, <PHONE>, <PHONE>"),
        (
            "ISBN 978-3-16-148410-0, 2023-01-15, order 4500012345",
            "ISBN 978-3-16-148410-0, 2023-01-15, order 4500012345",
        ),
        ("Bearer of bad news; Bearer abc123def456ghi789", "Bearer of bad news; Bearer <SECRET>"),
    ],
)
def test_look_alikes_and_decisions(text: str, expected: str) -> None:
    assert pii.scrub(text, PII_TYPES)[0] == expected


def test_scrub_counts_per_type_and_respects_types_and_placeholder() -> None:
    text = "mail a.b@example.com, key AKIAIOSFODNN7EXAMPLE, call +1 415 555 2671, b@example.org"
    out, counts = pii.scrub(text, PII_TYPES)
    assert out == "mail <EMAIL>, key <SECRET>, call <PHONE>, <EMAIL>"
    assert counts == {"EMAIL": 2, "SECRET": 1, "PHONE": 1}
    out, counts = pii.scrub(text, ["EMAIL"], placeholder="[{type} removed]")
    assert out == "mail [EMAIL removed], key AKIAIOSFODNN7EXAMPLE, call +1 415 555 2671, [EMAIL removed]"
    assert counts == {"EMAIL": 2}


def test_private_key_block_is_one_secret() -> None:
    body = "b3BlbnNzaC1rZXktdjEAAAAA\nAAAA"
    block = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----"
    text = f"key:\n{block}\nok"
    assert pii.scrub(text, PII_TYPES) == ("key:\n<SECRET>\nok", {"SECRET": 1})
    public = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    assert pii.scrub(public, PII_TYPES)[0] == public


def test_checks() -> None:
    assert pii.luhn_valid("4111111111111111") and not pii.luhn_valid("4111111111111112")
    assert pii.card_issuer_ok("378282246310005") and not pii.card_issuer_ok("37828224631000")  # Amex is 15
    assert pii.iban_valid("GB82WEST12345698765432") and not pii.iban_valid("GB82WEST12345698765433")
    assert not pii.iban_valid("XX82WEST12345698765432")  # unknown country


@pytest.mark.real
def test_real_gsm8k_text_has_no_findings(benchmark_module: Any) -> None:
    from lmtune.errors import DataError

    try:
        records = benchmark_module("curation_support").gsm8k_records()
    except DataError as exc:
        pytest.skip(str(exc))
    flagged = [r.text for r in records if pii.find(r.text, PII_TYPES)]
    assert flagged == []
