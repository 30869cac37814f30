"""The free-text PII scanner on positives and look-alike negatives."""

from __future__ import annotations

import pyarrow as pa
import pytest
from planted_pii import clean, planted

from entai.shared.data import PiiKind, find_pii, replace_pii, scan_column, scrub_column


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


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("ref_10.1.2.3_end", "10.1.2.3"),  # glued to underscores
        ("host10.0.0.1:8080", "10.0.0.1"),  # glued to letters, then a port
        ("url=http://192.168.0.7/x", "192.168.0.7"),
        ("peer ::ffff:10.0.0.1 up", "::ffff:10.0.0.1"),  # IPv4-mapped IPv6, whole
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("pan_4111111111111111_x", "4111111111111111"),
        ("ssn_123-45-6789.", "123-45-6789"),
        ("tel_415-555-0100_home", "415-555-0100"),
    ],
)
def test_value_inside_a_longer_token_is_found(text: str, found: str) -> None:
    assert [text[m.start : m.end] for m in find_pii(text)] == [found]


@pytest.mark.parametrize(
    "text",
    [
        "1256.1.1.1",  # the address would be part of a longer number
        "10.1.2.3.4",
        "94111111111111111",  # a valid card number inside a longer digit run
        "1123-45-6789",
        "card 4111 1111 1111 1112",  # fails Luhn, in any position
        "pan_4111111111111112_x",
    ],
)
def test_part_of_a_longer_number_or_failing_luhn_is_not_found(text: str) -> None:
    assert find_pii(text) == []


def test_scan_column_reports_rows_per_kind_and_scrubs_only_findings() -> None:
    values = pa.array(
        [
            "clean",
            None,
            "a@b.io and 10.0.0.1",
            "card 4111 1111 1111 1112",  # a candidate that fails Luhn
            "a@b.io",
            "card 4111 1111 1111 1111",
        ]
    )
    scan = scan_column(values, lambda kind, _: f"[{kind}]")
    assert scan.found.tolist() == [False, False, True, False, True, True]
    assert {kind: rows.tolist() for kind, rows in scan.kinds.items()} == {
        PiiKind.EMAIL: [False, False, True, False, True, False],
        PiiKind.CARD: [False, False, False, False, False, True],
        PiiKind.IP: [False, False, True, False, False, False],
    }
    assert scan.counts() == {PiiKind.EMAIL: 2, PiiKind.CARD: 1, PiiKind.IP: 1}
    assert scan.scrubbed.to_pylist() == [
        "clean",
        None,
        "[email] and [ip]",
        "card 4111 1111 1111 1112",
        "[email]",
        "card [card]",
    ]


def test_scan_column_without_candidates_returns_the_column_itself() -> None:
    values = pa.array(["e1", "e2", None, "view"])
    scan = scan_column(values, lambda kind, _: "x")
    assert scan.kinds == {} and not scan.found.any()
    assert scan.scrubbed is values


def test_every_planted_value_is_found_and_no_clean_look_alike() -> None:
    values = planted(600)
    for kind, value, text in values:
        spans = [(m.kind, m.start, m.end) for m in find_pii(text)]
        start = text.index(value)
        assert len(spans) == 1, text
        found_kind, found_start, found_end = spans[0]
        assert found_kind == kind
        assert found_start <= start and start + len(value) <= found_end, text
    assert [text for text in clean(60) if find_pii(text)] == []
