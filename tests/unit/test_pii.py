"""The free-text PII scanner on positives and look-alike negatives."""

from __future__ import annotations

import pyarrow as pa
import pytest

from entai.shared.data import PiiKind, find_pii, replace_pii, scrub_column


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        (
            "write to jane.doe+x@mail.example.co.uk now",
            PiiKind.EMAIL,
            "jane.doe+x@mail.example.co.uk",
        ),
        ("card 4111 1111 1111 1111.", PiiKind.CARD, "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", PiiKind.CARD, "4111-1111-1111-1111"),
        ("amex 3782 822463 10005", PiiKind.CARD, "3782 822463 10005"),
        ("pan:5555555555554444", PiiKind.CARD, "5555555555554444"),
        ("ssn 123-45-6789", PiiKind.SSN, "123-45-6789"),
        ("call 555-867-5309", PiiKind.PHONE, "555-867-5309"),
        ("call (555) 867-5309", PiiKind.PHONE, "(555) 867-5309"),
        ("call +1 555 867 5309", PiiKind.PHONE, "+1 555 867 5309"),
        ("uk +44 20 7946 0958", PiiKind.PHONE, "+44 20 7946 0958"),
        ("from 192.168.1.20 ok", PiiKind.IP, "192.168.1.20"),
        ("from 2001:db8:85a3::8a2e:370:7334 ok", PiiKind.IP, "2001:db8:85a3::8a2e:370:7334"),
        ("host fe80::1", PiiKind.IP, "fe80::1"),
    ],
)
def test_positives(text: str, kind: PiiKind, found: str) -> None:
    matches = find_pii(text)
    assert [(m.kind, text[m.start : m.end]) for m in matches] == [(kind, found)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "order 1234567890123",  # 13 digits, fails Luhn
        "ssn 000-12-3456",
        "ssn 666-12-3456",
        "ssn 912-12-3456",
        "ssn 123-00-4567",
        "date 2024-01-15 at 12:30:45",
        "version 1.2.3.4.5 and 1.2.3",
        "ip 256.1.1.1",
        "std::vector<int>",
        "mac 00:1A:2B:3C:4D:5E",
        "user@localhost",
        "zip 12345-6789",
        "+12",
    ],
)
def test_look_alike_negatives(text: str) -> None:
    assert find_pii(text) == []


def test_valid_card_inside_longer_digit_run_is_found() -> None:
    text = "ref 12 4111 1111 1111 1111 end"
    assert [m.kind for m in find_pii(text)] == [PiiKind.CARD]


def test_replace_several_findings() -> None:
    text = "a@b.io, 555-867-5309 and 10.0.0.1"
    out = replace_pii(text, lambda kind, _: f"<{kind}>")
    assert out == "<email>, <phone> and <ip>"


def test_scrub_column_leaves_clean_rows_and_nulls() -> None:
    values = pa.array(["clean", None, "mail a@b.io", "ssn 123-45-6789"])
    out = scrub_column(values, lambda kind, _: f"[{kind}]").to_pylist()
    assert out == ["clean", None, "mail [email]", "ssn [ssn]"]
