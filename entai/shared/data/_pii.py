"""Free-text PII scanner: emails, phone numbers, US SSNs, payment cards, IP addresses.

Own recognizers (Presidio's analyzer needs spaCy, which is not a dependency). Each is
a regular expression written in the common subset of Python ``re`` and RE2, plus an
optional validator (Luhn for cards, ``ipaddress`` for IPv6, context checks), so that:

1. :func:`scrub_column` finds candidate rows for a whole column at once with
   ``pyarrow.compute.match_substring_regex`` (RE2, vectorised);
2. only candidate rows are scanned in Python, where validators run and each finding
   is replaced through a callback (redact, mask or pseudonymise).

A candidate that fails its validator is not skipped wholesale: scanning resumes one
character after its start, so a valid value inside a longer look-alike is still found.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "PiiClass",
    "PiiKind",
    "PiiMatch",
    "canonical_finding",
    "find_pii",
    "replace_pii",
    "scrub_column",
]


class PiiClass(StrEnum):
    """How personal a column's or a feature's values are; governance decides access by it.

    Contracts declare it per column and feature definitions per field.
    """

    NONE = "none"
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    FREE_TEXT = "free_text"


class PiiKind(StrEnum):
    """The kinds of PII the scanner recognises."""

    EMAIL = "email"
    CARD = "card"
    SSN = "ssn"
    PHONE = "phone"
    IP = "ip"


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One finding: its kind and the ``[start, end)`` span in the text."""

    kind: PiiKind
    start: int
    end: int


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_EMAIL = (
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)
_CARD = (
    r"\b(?:[0-9]{13,19}"
    r"|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,3})?"
    r"|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})\b"
)
_SSN = (
    r"\b(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
    r"[ \-](?:0[1-9]|[1-9][0-9])"
    r"[ \-](?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b"
)
_IPV4 = rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b"
_IPV6 = r"(?:[0-9A-Fa-f]{1,4}|:)?(?::[0-9A-Fa-f]{0,4}){2,7}"
_PHONE = (
    r"(?:\+1[ .\-]?)?(?:\([0-9]{3}\)[ .\-]?|\b[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}\b"
    r"|\+[1-9][0-9]{0,2}(?:[ .\-]?[0-9]{2,4}){2,5}\b"
)
# Order matters: at one position the first alternative that matches wins.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("email", _EMAIL),
    ("card", _CARD),
    ("ssn", _SSN),
    ("ipv4", _IPV4),
    ("ipv6", _IPV6),
    ("phone", _PHONE),
)
_KIND = {
    "email": PiiKind.EMAIL,
    "card": PiiKind.CARD,
    "ssn": PiiKind.SSN,
    "ipv4": PiiKind.IP,
    "ipv6": PiiKind.IP,
    "phone": PiiKind.PHONE,
}
_COMBINED = "|".join(f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS)
_REGEX = re.compile(_COMBINED, re.ASCII)
_PHONE_DIGITS = (8, 15)
_ALNUM = frozenset("0123456789ABCDEFabcdefghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _luhn_ok(number: str) -> bool:
    digits = np.frombuffer(number.encode(), dtype=np.uint8) - ord("0")
    doubled = digits[::-1].astype(np.int64)
    doubled[1::2] *= 2
    doubled[doubled > 9] -= 9
    return int(doubled.sum()) % 10 == 0


def _card_ok(text: str, match: re.Match[str]) -> bool:
    return _luhn_ok(_digits(match.group()))


def _ipv4_ok(text: str, match: re.Match[str]) -> bool:
    before = text[max(match.start() - 2, 0) : match.start()]
    after = text[match.end() : match.end() + 2]
    dotted_before = len(before) == 2 and before[1] == "." and before[0].isdigit()
    dotted_after = len(after) == 2 and after[0] == "." and after[1].isdigit()
    return not (dotted_before or dotted_after)


def _ipv6_ok(text: str, match: re.Match[str]) -> bool:
    start, end = match.start(), match.end()
    if (start > 0 and text[start - 1] in _ALNUM) or (end < len(text) and text[end] in _ALNUM):
        return False
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return False
    return True


def _phone_ok(text: str, match: re.Match[str]) -> bool:
    low, high = _PHONE_DIGITS
    return low <= len(_digits(match.group())) <= high


_VALIDATORS: dict[str, Callable[[str, re.Match[str]], bool]] = {
    "card": _card_ok,
    "ipv4": _ipv4_ok,
    "ipv6": _ipv6_ok,
    "phone": _phone_ok,
}


def find_pii(text: str) -> list[PiiMatch]:
    """Every PII finding in ``text``, left to right, non-overlapping."""
    found: list[PiiMatch] = []
    position = 0
    while (match := _REGEX.search(text, position)) is not None:
        name = match.lastgroup or ""
        validator = _VALIDATORS.get(name)
        if validator is None or validator(text, match):
            found.append(PiiMatch(_KIND[name], match.start(), match.end()))
            position = match.end()
        else:
            position = match.start() + 1
    return found


def replace_pii(text: str, replacement: Callable[[PiiKind, str], str]) -> str:
    """``text`` with each finding replaced by ``replacement(kind, found_text)``."""
    parts: list[str] = []
    last = 0
    for finding in find_pii(text):
        parts.append(text[last : finding.start])
        parts.append(replacement(finding.kind, text[finding.start : finding.end]))
        last = finding.end
    parts.append(text[last:])
    return "".join(parts)


def canonical_finding(kind: PiiKind, text: str) -> str:
    """The form a finding is pseudonymised in: lower-case emails, digits of numbers."""
    if kind == PiiKind.EMAIL:
        return text.lower()
    if kind in (PiiKind.CARD, PiiKind.SSN, PiiKind.PHONE):
        return _digits(text)
    return text.lower()


def scrub_column(values: pa.Array, replacement: Callable[[PiiKind, str], str]) -> pa.Array:
    """Replace PII in a string column; rows without a candidate are not touched in Python."""
    candidates = pc.fill_null(pc.match_substring_regex(values, _COMBINED), False)
    positions = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
    if positions.size == 0:
        return values
    texts = pc.take(values, pa.array(positions)).to_pylist()
    scrubbed = pa.array([replace_pii(t, replacement) for t in texts], type=pa.string())
    mask = np.zeros(len(values), dtype=bool)
    mask[positions] = True
    return pc.replace_with_mask(values, pa.array(mask), scrubbed)
