"""Free-text PII scanner: emails, phone numbers, US SSNs, payment cards, IP addresses.

Own recognizers (Presidio's analyzer needs spaCy, which is not a dependency). Each is
a regular expression written in the common subset of Python ``re`` and RE2, plus an
optional validator (Luhn for cards, ``ipaddress`` for IPv6, context checks), so that:

1. :func:`scan_column` (and :func:`scrub_column`) finds candidate rows for a whole
   column at once with ``pyarrow.compute.match_substring_regex`` (RE2, vectorised);
2. only the distinct candidate values are scanned in Python, where validators run;
   each finding is reported per row and kind, and replaced through a callback
   (redact, mask or pseudonymise).

A candidate that fails its validator is not skipped wholesale: scanning resumes one
character after its start, so a valid value inside a longer look-alike is still found.
Numbers (cards, SSNs, IPv4 addresses, phones) are bounded by "no digit next to them"
rather than by word boundaries, so one glued into a longer token (``host_10.0.0.1``,
``pan:4111111111111111x``) is found, while a part of a longer digit run is not.
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
    "ColumnScan",
    "PiiClass",
    "PiiKind",
    "PiiMatch",
    "canonical_finding",
    "find_pii",
    "replace_pii",
    "scan_column",
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
# Numbers (cards, SSNs, IPv4 addresses, phones) must not touch another digit: that
# makes them part of a longer number. A word boundary (\b) would also miss one glued
# to letters or underscores (``ref_10.0.0.1``). The boundary is a lookaround in the
# Python pattern (which decides) and left out of the RE2 one (which only preselects
# rows, and has no lookarounds).
_BEFORE, _AFTER = "\x00before\x00", "\x00after\x00"
_CARD = (
    rf"{_BEFORE}(?:[0-9]{{13,19}}"
    r"|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,3})?"
    rf"|[0-9]{{4}}[ \-][0-9]{{6}}[ \-][0-9]{{4,5}}){_AFTER}"
)
_SSN = (
    rf"{_BEFORE}(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{{2}}|6[0-57-9][0-9]|66[0-57-9])"
    r"[ \-](?:0[1-9]|[1-9][0-9])"
    rf"[ \-](?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{{2}}|[1-9][0-9]{{3}}){_AFTER}"
)
_IPV4 = rf"{_BEFORE}(?:{_OCTET}\.){{3}}{_OCTET}{_AFTER}"
# The optional tail completes an address ending in a dotted quad (``::ffff:10.0.0.1``:
# "10" is taken as a hex group, then ".0.0.1").
_IPV6 = rf"(?:[0-9A-Fa-f]{{1,4}}|:)?(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?:(?:\.{_OCTET}){{3}})?"
_PHONE = (
    rf"(?:\+1[ .\-]?)?(?:\([0-9]{{3}}\)[ .\-]?|{_BEFORE}[0-9]{{3}}[ .\-])"
    rf"[0-9]{{3}}[ .\-][0-9]{{4}}{_AFTER}"
    rf"|\+[1-9][0-9]{{0,2}}(?:[ .\-]?[0-9]{{2,4}}){{2,5}}{_AFTER}"
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
_ALTERNATIVES = "|".join(f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS)
# RE2 (pyarrow), to preselect rows: a superset of what the Python pattern finds. No
# boundaries; and an IPv6 address is only looked for where one can be: a valid one has
# "::" or eight groups (the dotted-quad forms are candidates through the IPv4
# alternative already). The Python pattern's IPv6 alternative also matches any "a:b:c",
# so without this every time of day ("10:00:00") would be a candidate.
_IPV6_CANDIDATE = r"::|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
_PREFILTERS = [_IPV6_CANDIDATE if name == "ipv6" else pattern for name, pattern in _PATTERNS]
_COMBINED = "|".join(f"(?:{p})" for p in _PREFILTERS).replace(_BEFORE, "").replace(_AFTER, "")
_REGEX = re.compile(
    _ALTERNATIVES.replace(_BEFORE, "(?<![0-9])").replace(_AFTER, "(?![0-9])"), re.ASCII
)
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


def _replaced(
    text: str, findings: list[PiiMatch], replacement: Callable[[PiiKind, str], str]
) -> str:
    parts: list[str] = []
    last = 0
    for finding in findings:
        parts.append(text[last : finding.start])
        parts.append(replacement(finding.kind, text[finding.start : finding.end]))
        last = finding.end
    parts.append(text[last:])
    return "".join(parts)


def replace_pii(text: str, replacement: Callable[[PiiKind, str], str]) -> str:
    """``text`` with each finding replaced by ``replacement(kind, found_text)``."""
    return _replaced(text, find_pii(text), replacement)


def canonical_finding(kind: PiiKind, text: str) -> str:
    """The form a finding is pseudonymised in: lower-case emails, digits of numbers."""
    if kind == PiiKind.EMAIL:
        return text.lower()
    if kind in (PiiKind.CARD, PiiKind.SSN, PiiKind.PHONE):
        return _digits(text)
    return text.lower()


@dataclass(frozen=True)
class ColumnScan:
    """What :func:`scan_column` found in one string column.

    Attributes:
        found: Per row, whether it holds at least one finding.
        kinds: Per kind found, a mask over the rows: True where a row holds that kind.
        scrubbed: The column with every finding replaced (the input when none was).
    """

    found: np.ndarray
    kinds: dict[PiiKind, np.ndarray]
    scrubbed: pa.Array

    def counts(self) -> dict[PiiKind, int]:
        """Per kind found, how many rows hold it."""
        return {kind: int(rows.sum()) for kind, rows in self.kinds.items()}


def _candidates(values: pa.Array) -> np.ndarray:
    """Positions of the rows the RE2 prefilter picks (one vectorised pass)."""
    candidates = pc.fill_null(pc.match_substring_regex(values, _COMBINED), False)
    return np.flatnonzero(candidates.to_numpy(zero_copy_only=False))


def scan_column(values: pa.Array, replacement: Callable[[PiiKind, str], str]) -> ColumnScan:
    """Find (per row and kind) and replace the PII in a string column.

    One RE2 pass over the whole column picks candidate rows; only the distinct
    candidate values are scanned in Python, where the validators run. Nulls and rows
    without a candidate are never looked at in Python.
    """
    found = np.zeros(len(values), dtype=bool)
    positions = _candidates(values)
    if positions.size == 0:
        return ColumnScan(found, {}, values)
    encoded = pc.take(values, pa.array(positions)).dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    findings = [find_pii(text) for text in texts]
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    found[positions] = np.fromiter(map(bool, findings), dtype=bool, count=len(findings))[codes]
    if not found.any():
        return ColumnScan(found, {}, values)
    kinds_of = [{m.kind for m in f} for f in findings]
    present = set().union(*kinds_of)
    kinds: dict[PiiKind, np.ndarray] = {}
    for kind in (k for k in PiiKind if k in present):
        holds = np.fromiter((kind in k for k in kinds_of), dtype=bool, count=len(kinds_of))
        kinds[kind] = np.zeros(len(values), dtype=bool)
        kinds[kind][positions] = holds[codes]
    replaced = pa.array(
        [_replaced(t, f, replacement) if f else t for t, f in zip(texts, findings, strict=True)],
        type=values.type,
    )
    changed = np.zeros(len(values), dtype=bool)
    changed[positions] = True
    scrubbed = pc.replace_with_mask(values, pa.array(changed), pc.take(replaced, encoded.indices))
    return ColumnScan(found, kinds, scrubbed)


def scrub_column(values: pa.Array, replacement: Callable[[PiiKind, str], str]) -> pa.Array:
    """Replace PII in a string column; rows without a candidate are not touched in Python.

    Unlike :func:`scan_column` it neither deduplicates nor reports per kind: free-text
    columns come here already deduplicated (``per_distinct``).
    """
    positions = _candidates(values)
    if positions.size == 0:
        return values
    texts = pc.take(values, pa.array(positions)).to_pylist()
    scrubbed = pa.array([replace_pii(t, replacement) for t in texts], type=values.type)
    changed = np.zeros(len(values), dtype=bool)
    changed[positions] = True
    return pc.replace_with_mask(values, pa.array(changed), scrubbed)
