"""Planted PII for the undeclared-PII tests: distinct values of every kind, in free text.

``planted(n)`` gives ``n`` distinct values (emails, SSNs, Luhn-valid card numbers,
phone numbers, IPv4 and IPv6 addresses, in turn) with the kind each is, and the
sentence each is planted in; ``clean(n)`` gives free text with look-alikes that are not
PII (a card number failing Luhn, version strings, dates, order numbers).
``leaked(values, text)`` names the planted values that appear in ``text``, as written
or as their bare digits.
"""

from __future__ import annotations

from collections.abc import Iterable

KINDS = ("email", "ssn", "card", "phone", "ip", "ip")
_WINDOW = 8  # no planted value (nor its digits) is shorter
_SENTENCES = (
    "please contact {} about the order",
    "customer said: {}",
    "ref_{}_end",
    "{}",
    "escalated; details {}, see ticket",
)


def _luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def _card(i: int) -> str:
    body = f"4{i:014d}"
    number = body + _luhn_digit(body)
    groups = " ".join(number[g : g + 4] for g in range(0, 16, 4))
    return (number, groups, groups.replace(" ", "-"))[i % 3]


def _value(i: int) -> tuple[str, str]:
    slot = i % len(KINDS)
    kind, n = KINDS[slot], i // len(KINDS)
    if kind == "email":
        return kind, f"jane.doe{n}@mail{n % 7}.example.com"
    if kind == "ssn":
        return kind, f"{123 + n // 90:03d}-{10 + n % 90:02d}-{4000 + n:04d}"
    if kind == "card":
        return kind, _card(n)
    if kind == "phone":
        return kind, (f"415-555-{n:04d}", f"+1 212 555 {n:04d}", f"(646) 555-{n:04d}")[n % 3]
    if slot == 4:
        return kind, f"10.{n // 250 % 250}.{n % 250}.{1 + n % 200}"
    return kind, f"2001:db8:{n:x}::{(n * 13) % 65535 + 1:x}"


def planted(n: int) -> list[tuple[str, str, str]]:
    """``n`` distinct planted values: (kind, value, the sentence holding it)."""
    out = []
    for i in range(n):
        kind, value = _value(i)
        out.append((kind, value, _SENTENCES[i % len(_SENTENCES)].format(value)))
    return out


def clean(n: int) -> list[str]:
    """``n`` free-text values without PII, look-alikes included."""
    looks = (
        "all good, delivered on 2024-03-01 at 12:30:45",
        "card 4111 1111 1111 1112 was declined",  # fails Luhn
        "upgraded to version 1.2.3.4.5",
        "order 1234567890123 shipped",  # 13 digits, fails Luhn
        "std::vector<int> in the stack trace",
        "zip 12345-6789",
    )
    return [f"{looks[i % len(looks)]} #{i}" for i in range(n)]


def counts(values: Iterable[tuple[str, str, str]]) -> dict[str, int]:
    """Per kind, how many planted values there are."""
    out: dict[str, int] = {}
    for kind, _, _ in values:
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items()))


def leaked(values: Iterable[tuple[str, str, str]], text: str) -> list[str]:
    """The planted values found in ``text``, as written or as their bare digits.

    A value can only be in ``text`` if each of its windows of ``_WINDOW`` characters
    is: one pass over ``text`` collects those, so 2,000 values need not be searched
    for one by one in megabytes of text; the few whose windows are all there are
    then looked for.
    """
    windows = {text[i : i + _WINDOW] for i in range(len(text) - _WINDOW + 1)}
    found = []
    for kind, value, _ in values:
        forms = [value]
        if kind in ("ssn", "card", "phone"):
            forms.append("".join(c for c in value if c.isdigit()))
        for form in forms:
            parts = [form[i : i + _WINDOW] for i in range(max(len(form) - _WINDOW + 1, 1))]
            if all(part in windows for part in parts) and form in text:
                found.append(value)
                break
    return found
