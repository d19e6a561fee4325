"""Find and replace personal data and secrets in text: e-mails, phone numbers, payment cards, IBANs,
IPv4/IPv6 addresses, US social security numbers, and secrets (cloud keys, API/bearer tokens, private keys).

Pattern matches are confirmed by the checks that make each kind what it is, so look-alikes stay:

- CARD: 13-19 digits (optionally grouped by spaces or dashes), a known issuer prefix (Visa, Mastercard,
  Amex, Discover, JCB, Diners, UnionPay, Maestro) with a length that issuer uses, and a valid Luhn check
  digit. A Luhn-invalid 16-digit number is not a card.
- IBAN: a country code, the length that country's IBANs have, and the ISO 13616 mod-97 checksum == 1.
- IPv4: four dotted octets 0-255 not part of a longer dotted number. A dotted quad written as a version
  (after `v`, `version`, `release`, `build`, `firmware`) is not an address, nor is a network range in
  CIDR notation whose host bits are zero (`10.0.0.0/8`; `192.168.1.23/24` is a host and is scrubbed);
  any other valid dotted quad is (so `1.2.3.4` alone is scrubbed: wrongly removing a number costs less
  than leaking an address).
- IPv6: accepted by `ipaddress.IPv6Address` (full, compressed `::`, IPv4-mapped); times and MAC
  addresses are not valid IPv6 addresses, and `::N` (one group, N != 1) is taken for code (`a[::2]`).
- SSN: `AAA-GG-SSSS` (dashes or spaces) with area not 000, 666 or 9xx, group not 00, serial not 0000.
- PHONE: international `+CC` numbers with 8-15 digits, and national formats: North American
  `(AAA) BBB-CCCC` / `AAA-BBB-CCCC` / `AAA.BBB.CCCC` (optional leading 1), UK/DE/FR-style trunk-prefix
  numbers (`0` + area code + subscriber number in groups; `00` is an international prefix, not an
  area code). A digit group right before the match (`1941 0090 0696`) means it is part of a longer
  number, not a phone number. Digits must be grouped the way people write
  phone numbers: a bare run of digits (an order number) is not a phone number.
- SECRET: AWS access key ids (AKIA/ASIA + 16), `aws_secret_access_key = ...`, OpenAI-style `sk-...`,
  Stripe `sk_live_`/`rk_live_`, GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`/`github_pat_`, Slack `xox?-`,
  Google `AIza...`, JSON web tokens, `Bearer <token>`, and PEM private key blocks.

Kinds are replaced in a fixed order (secrets first, phone numbers last) so that a placeholder is never
matched again and a longer kind wins over the digits inside it.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from lmtune.config.curation import PiiType

ORDER: tuple[PiiType, ...] = ("SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE")
"""The order kinds are replaced in."""


@dataclass(frozen=True)
class Finding:
    """One match: its kind and its span in the text it was found in."""

    type: PiiType
    start: int
    end: int


# --- secrets -----------------------------------------------------------------------------------------
# (substrings one of which a match must contain, pattern); the cheap `in` test skips most texts
_SECRETS: list[tuple[tuple[str, ...], re.Pattern[str]]] = [
    (
        ("PRIVATE KEY",),
        re.compile(
            r"(-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
            r"(?: BLOCK)?-----)",
            re.DOTALL,
        ),
    ),
    (
        ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA"),
        re.compile(r"\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16})\b"),
    ),
    (
        ("ws_secret_access_key", "WS_SECRET_ACCESS_KEY"),
        re.compile(r"(?i:aws_secret_access_key)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
    ),
    (("sk-",), re.compile(r"(?<![\w-])(sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,})")),
    (("k_live_", "k_test_"), re.compile(r"\b([sr]k_(?:live|test)_[A-Za-z0-9]{16,})")),
    (("gh", "github_pat_"), re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    (("xox",), re.compile(r"\b(xox[abprs]-[A-Za-z0-9-]{10,})")),
    (("AIza",), re.compile(r"\b(AIza[0-9A-Za-z_-]{35})")),
    (("eyJ",), re.compile(r"\b(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")),
    # RFC 6750 token; at least one digit, so "Bearer of bad news" stays
    (
        ("earer", "EARER"),
        re.compile(r"\b(?i:bearer)\s+((?=[A-Za-z._~+/-]*\d)[A-Za-z0-9._~+/-]{16,}=*)"),
    ),
]


def _secrets(text: str) -> Iterator[tuple[int, int]]:
    for needles, pattern in _SECRETS:
        if any(n in text for n in needles):
            for m in pattern.finditer(text):
                yield m.start(1), m.end(1)


# --- e-mail ------------------------------------------------------------------------------------------
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+'-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield m.start(), m.end()


# --- IBAN --------------------------------------------------------------------------------------------
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip
"""IBAN length per country (ISO 13616 registry)."""

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})(?=[ ]?[A-Z0-9])")


def iban_valid(iban: str) -> bool:
    """True for a compact IBAN of its country's length whose mod-97 checksum is 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        # Collect the country's number of characters, allowing single spaces between groups.
        chars: list[str] = []
        pos = m.start()
        while pos < len(text) and len(chars) < length:
            ch = text[pos]
            if ch.isascii() and (ch.isdigit() or ch.isupper()):
                chars.append(ch)
            elif not (ch == " " and chars and pos + 1 < len(text) and text[pos + 1].isalnum()):
                break
            pos += 1
        ends_here = not (pos < len(text) and text[pos].isalnum())
        if len(chars) == length and ends_here and iban_valid("".join(chars)):
            yield m.start(), pos


# --- payment cards -----------------------------------------------------------------------------------
_CARD = re.compile(r"(?<![\w.,/-])\d(?:[ -]?\d){12,18}(?![\w]|[.,/-]\d)")
_CARD_GROUPS = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    total = 0
    for k, ch in enumerate(reversed(digits)):
        d = int(ch)
        if k % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """True when the number starts with a known issuer prefix and has a length that issuer uses."""
    n, p2, p4, p6 = len(digits), int(digits[:2]), int(digits[:4]), int(digits[:6])
    return (
        (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)  # Mastercard
        or (p2 in (34, 37) and n == 15)  # American Express
        or ((p4 == 6011 or p2 == 65 or 644 <= p4 // 10 <= 649 or 622126 <= p6 <= 622925) and 16 <= n <= 19)
        or (3528 <= p4 <= 3589 and 16 <= n <= 19)  # JCB
        or ((300 <= p4 // 10 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19)  # Diners
        or (p2 == 62 and 16 <= n <= 19)  # UnionPay
        or (p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763) and 12 <= n <= 19)  # Maestro
    )


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        span = m.group(0)
        groups = _CARD_GROUPS.findall(span)
        # Grouped numbers are written in groups of 4 (Amex/Diners: 4-6-5 / 4-6-4); anything else is a list
        # of numbers, not one card.
        if (
            len(groups) > 1
            and not (all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 4)
            and [len(g) for g in groups] not in ([4, 6, 5], [4, 6, 4])
        ):
            continue
        digits = "".join(groups)
        if card_issuer_ok(digits) and luhn_valid(digits):
            yield m.start(), m.end()


# --- US social security numbers ---------------------------------------------------------------------
_SSN = re.compile(r"(?<![\w.-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w]|[.-]\d)")


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(4)
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        yield m.start(), m.end()


# --- IP addresses ------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_VERSION_BEFORE = re.compile(r"(?:\bv|\bversion\s*|\brelease\s*|\bbuild\s*|\bfirmware\s*)$", re.IGNORECASE)
_CIDR_AFTER = re.compile(r"/\d{1,2}(?!\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![\w:])")


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        if _VERSION_BEFORE.search(text[max(0, m.start() - 12) : m.start()]):
            continue
        cidr = _CIDR_AFTER.match(text, m.end())
        if cidr is not None and _is_network(m.group(0) + cidr.group(0)):
            continue  # a network range (10.0.0.0/8), not a host's address
        yield m.start(), m.end()
    if text.count(":") < 2:
        return
    for m in _IPV6_CANDIDATE.finditer(text):
        candidate = m.group(0).rstrip(".")
        # "::" and "::N" are code (std::, a[::2]); of the one-group compressed forms only ::1 is written.
        if not any(ch.isdigit() for ch in candidate) or (
            candidate.startswith("::") and ":" not in candidate[2:] and candidate != "::1"
        ):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield m.start(), m.start() + len(candidate)


def _is_network(cidr: str) -> bool:
    """True for a CIDR whose address is the network itself (host bits zero), e.g. 10.0.0.0/8."""
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return False
    return not cidr.endswith(("/32", "/31"))


# --- phone numbers -----------------------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w+.,/-])(?<!\d[ .-])(?:"
    # international: +CC then groups of digits separated by space, dash, dot or slash; "(0)" allowed
    r"\+\d{1,3}(?:[ .-]?\(0\))?(?:[ .\-/]?\(?\d{1,5}\)?){2,7}"
    # North American: optional 1, area code (parenthesised or not), exchange, line
    r"|(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    # trunk-prefix national (UK 0xx/0xxxx, DE 0xx/0xxxx, FR 0x xx xx xx xx): 0 + area, then groups
    r"|\(?0[1-9]\d{0,3}\)?(?:(?:[ .\-/]| [-/] )\d{2,8}){1,4}"
    r")(?![\w]|[.,/-]\d)"
)


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        span = m.group(0)
        digits = sum(ch.isdigit() for ch in span)
        if span.startswith("+"):
            if 8 <= digits <= 15:
                yield m.start(), m.end()
        elif span.startswith(("(0", "0")):
            # 0 + 9 or 10 digits (UK 11, FR 10, DE 10-12): shorter runs are codes, times or decimals.
            if 10 <= digits <= 12 and not re.fullmatch(r"0\d*[.]\d+", span):
                yield m.start(), m.end()
        else:
            yield m.start(), m.end()


_FINDERS: dict[PiiType, Callable[[str], Iterable[tuple[int, int]]]] = {
    "SECRET": _secrets,
    "EMAIL": _emails,
    "IBAN": _ibans,
    "CARD": _cards,
    "SSN": _ssns,
    "IP": _ips,
    "PHONE": _phones,
}


def scrub(text: str, types: Iterable[PiiType], placeholder: str = "<{type}>") -> tuple[str, Counter[str]]:
    """Replace every finding of the given kinds with its placeholder.

    Args:
        text: the text to scrub.
        types: the kinds looked for (replaced in `ORDER`, whatever order they are given in).
        placeholder: replacement; `{type}` becomes the kind.

    Returns:
        The scrubbed text and the number of replacements per kind (kinds with none are absent).
    """
    wanted = set(types)
    counts: Counter[str] = Counter()
    for kind in ORDER:
        if kind not in wanted:
            continue
        spans = _merge(sorted(_FINDERS[kind](text)))
        if not spans:
            continue
        repl = placeholder.replace("{type}", kind)
        pieces, last = [], 0
        for start, end in spans:
            pieces += [text[last:start], repl]
            last = end
        text = "".join([*pieces, text[last:]])
        counts[kind] += len(spans)
    return text, counts


def find(text: str, types: Iterable[PiiType]) -> list[Finding]:
    """The findings of the given kinds in `text`, as `scrub` would replace them (in replacement order;
    spans of later kinds refer to the text with earlier kinds already replaced)."""
    out = []
    for kind in ORDER:
        if kind in set(types):
            spans = _merge(sorted(_FINDERS[kind](text)))
            out += [Finding(kind, s, e) for s, e in spans]
            text = scrub(text, [kind])[0]
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop spans overlapping an earlier one (sorted input)."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            continue
        merged.append((start, end))
    return merged
