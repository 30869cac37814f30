"""PII in columns the contract stores in the clear: scanned, quarantined or redacted."""

from __future__ import annotations

import typing

import pyarrow as pa
import pytest
from planted_pii import clean, counts, leaked, planted

from entai.shared.core import ConfigError, DefinitionError
from entai.shared.data import (
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_RULE,
    DataContract,
    UndeclaredPii,
    check_batch,
    merge_pii_counts,
    pseudonym,
    undeclared_pii_warnings,
    validate_and_mask,
)
from entai.shared.settings import SecuritySettings, load_settings

KEY = b"unit-test-key-0123456789abcdef"
CONTRACT = DataContract.from_yaml(
    """
source: tickets
purpose: test
retention_days: 30
event_time: ts
key: [ticket_id]
columns:
  - {name: ticket_id, type: string, nullable: false}
  - {name: user_id, type: string, pii: identifier}
  - {name: email, type: string, pii: sensitive, masking: mask}
  - {name: note, type: string, pii: free_text}
  - {name: comment, type: string}
  - {name: zone, type: string, pii: quasi_identifier}
  - {name: support_line, type: string, pii_scan: false}
  - {name: kind, type: string, allowed: [open, closed]}
  - {name: amount, type: int64}
  - {name: ts, type: timestamp}
"""
)
QUARANTINE = UndeclaredPii.QUARANTINE
REDACT = UndeclaredPii.REDACT


def rows(comments: list[str], **columns: list[str | None]) -> pa.Table:
    n = len(comments)
    data: dict[str, list[str | None]] = {
        "ticket_id": [f"t{i}" for i in range(n)],
        "user_id": [f"u{i}" for i in range(n)],
        "email": [f"user{i}@example.com" for i in range(n)],
        "note": ["call me on 555-867-5309"] * n,
        "comment": list(comments),
        "zone": ["north"] * n,
        "support_line": ["+1 800 555 0199"] * n,
        "kind": ["open"] * n,
        "amount": ["7"] * n,
        "ts": ["2024-03-01T10:00:00Z"] * n,
    }
    data.update(columns)
    return pa.table({k: pa.array(v, pa.string()) for k, v in data.items()})


def lake_text(*tables: pa.Table) -> str:
    return "\n".join(str(v) for t in tables for v in t.to_pylist())


def test_quarantine_policy_sends_rows_with_findings_to_quarantine_scrubbed() -> None:
    values = planted(120)
    comments = [text for _, _, text in values] + clean(80)
    checked = check_batch(rows(comments), CONTRACT, KEY, batch_id="b1")

    assert checked.accepted.num_rows == 80
    assert checked.quarantined.num_rows == 120
    assert checked.failed.tolist() == [True] * 120 + [False] * 80
    assert checked.pii_findings == {"comment": counts(values)}
    quarantined = checked.quarantined.to_pylist()
    assert {(q[QUARANTINE_RULE], q[QUARANTINE_COLUMN]) for q in quarantined} == {("pii", "comment")}
    reasons = {q[QUARANTINE_REASON] for q in quarantined}
    assert reasons == {
        f"pii(comment): undeclared {kind} found" for kind in ("email", "ssn", "card", "phone", "ip")
    }
    assert leaked(values, lake_text(checked.accepted, checked.quarantined)) == []
    assert "[REDACTED:EMAIL]" in quarantined[0]["comment"]
    # The clean rows are stored as they came.
    assert checked.accepted.column("comment").to_pylist() == clean(80)


def test_redact_policy_keeps_rows_and_masks_findings_in_place() -> None:
    values = planted(120)
    comments = [text for _, _, text in values] + clean(30)
    checked = check_batch(rows(comments), CONTRACT, KEY, batch_id="b1", undeclared_pii=REDACT)

    assert (checked.accepted.num_rows, checked.quarantined.num_rows) == (150, 0)
    assert checked.pii_findings == {"comment": counts(values)}
    stored = checked.accepted.column("comment").to_pylist()
    assert leaked(values, "\n".join(stored)) == []
    assert stored[0] == "please contact [REDACTED:EMAIL] about the order"
    assert stored[120:] == clean(30)


def test_declared_columns_keep_their_operators_and_are_not_scanned() -> None:
    checked = check_batch(rows(["fine"] * 2), CONTRACT, KEY)

    first = checked.accepted.to_pylist()[0]
    assert first["user_id"] == pseudonym("u0", KEY)  # identifier: hmac
    assert first["email"] == "*" * 13 + ".com"  # sensitive, masking mask
    assert first["note"] == "call me on [REDACTED:PHONE]"  # free_text: per finding
    assert checked.pii_findings == {}
    assert checked.quarantined.num_rows == 0


def test_opted_out_and_non_string_columns_are_left_alone() -> None:
    table = rows(["fine"], amount=["4111111111111111"])  # a Luhn-valid number, as int64
    checked = check_batch(table, CONTRACT, KEY)

    accepted = checked.accepted.to_pylist()
    assert accepted[0]["support_line"] == "+1 800 555 0199"  # pii_scan: false
    assert accepted[0]["amount"] == 4111111111111111
    assert checked.accepted.schema.field("amount").type == pa.int64()
    assert checked.pii_findings == {}


def test_quasi_identifier_stored_in_the_clear_is_scanned() -> None:
    checked = check_batch(rows(["fine"], zone=["zone of ann@corp.example"]), CONTRACT, KEY)
    assert checked.pii_findings == {"zone": {"email": 1}}
    assert checked.quarantined.column("zone").to_pylist() == ["zone of [REDACTED:EMAIL]"]


def test_a_finding_in_the_key_quarantines_its_row_even_when_redacting() -> None:
    table = rows(["fine", "fine"], ticket_id=["t-10.0.0.9", "t2"])
    checked = check_batch(table, CONTRACT, KEY, undeclared_pii=REDACT)

    assert checked.accepted.column("ticket_id").to_pylist() == ["t2"]
    quarantined = checked.quarantined.to_pylist()
    assert [(q["ticket_id"], q[QUARANTINE_RULE]) for q in quarantined] == [
        ("t-[REDACTED:IP]", "pii")
    ]
    warning = undeclared_pii_warnings(CONTRACT, checked.pii_findings, REDACT)
    assert len(warning) == 1 and "'ticket_id'" in warning[0] and "rows quarantined" in warning[0]


def test_quarantined_copy_is_scrubbed_whatever_sent_it_there() -> None:
    # A bad number (rule type) whose text is a phone number, and a disallowed category
    # holding an email: neither column is a string stored in the clear in accepted
    # rows, but the quarantined copy keeps the original text.
    table = rows(["fine", "fine"], amount=["555-867-5309", "1"], kind=["open", "bob@x.io"])
    checked = check_batch(table, CONTRACT, KEY)

    quarantined = checked.quarantined.to_pylist()
    assert [q[QUARANTINE_RULE] for q in quarantined] == ["type", "category"]
    assert quarantined[0]["amount"] == "[REDACTED:PHONE]"
    assert quarantined[1]["kind"] == "[REDACTED:EMAIL]"


def test_a_row_failing_another_rule_lists_pii_too_and_duplicates_ignore_pii_rows() -> None:
    table = rows(
        ["mail ann@corp.example", "fine", "fine"],
        ticket_id=["t1", "t1", "t3"],
        amount=["x", "1", "2"],
    )
    checked = check_batch(table, CONTRACT, KEY)

    quarantined = checked.quarantined.to_pylist()
    assert [q[QUARANTINE_RULE] for q in quarantined] == ["type"]
    assert quarantined[0][QUARANTINE_REASON] == (
        "type(amount): not a valid int64; pii(comment): undeclared email found"
    )
    # The second t1 is not a duplicate: the first one was quarantined.
    assert checked.accepted.column("ticket_id").to_pylist() == ["t1", "t3"]


def test_pandas_batches_get_the_same_policy() -> None:
    frame = rows(["mail ann@corp.example", "fine"]).to_pandas()
    accepted, quarantined = validate_and_mask(frame, CONTRACT, KEY)
    assert (len(accepted), len(quarantined)) == (1, 1)
    accepted, quarantined = validate_and_mask(frame, CONTRACT, KEY, undeclared_pii=REDACT)
    assert accepted["comment"].tolist() == ["mail [REDACTED:EMAIL]", "fine"]


def test_warnings_name_the_column_kinds_and_what_was_done() -> None:
    found = {"comment": {"email": 3, "ip": 1}}
    (warning,) = undeclared_pii_warnings(CONTRACT, found, QUARANTINE)
    assert "column 'comment'" in warning and "declare it PII" in warning
    assert "email in 3 row(s), ip in 1 row(s)" in warning and "rows quarantined" in warning
    (redacted,) = undeclared_pii_warnings(CONTRACT, found, REDACT)
    assert "findings redacted" in redacted
    assert undeclared_pii_warnings(CONTRACT, {}, QUARANTINE) == []


def test_counts_merge_across_blocks() -> None:
    merged = merge_pii_counts(
        [{"comment": {"ip": 1}}, {}, {"comment": {"email": 2, "ip": 3}, "zone": {"ssn": 1}}]
    )
    assert merged == {"comment": {"email": 2, "ip": 4}, "zone": {"ssn": 1}}


@pytest.mark.parametrize(
    "column",
    [
        "{name: n, type: int64, pii_scan: false}",
        "{name: n, type: string, pii: free_text, pii_scan: false}",
    ],
)
def test_pii_scan_false_only_on_a_string_stored_in_the_clear(column: str) -> None:
    text = f"""
source: s
purpose: test
retention_days: 1
event_time: ts
columns:
  - {column}
  - {{name: ts, type: timestamp}}
"""
    with pytest.raises(DefinitionError, match=r"column 'n': pii_scan: false only applies"):
        DataContract.from_yaml(text)


def test_setting_defaults_to_quarantine_and_refuses_a_platform_wide_allow() -> None:
    assert load_settings().security.undeclared_pii == "quarantine"
    assert load_settings(security={"undeclared_pii": "redact"}).security.undeclared_pii == "redact"
    with pytest.raises(ConfigError, match=r"security.undeclared_pii: .*pii_scan: false"):
        load_settings(security={"undeclared_pii": "allow"})


def test_setting_values_are_the_policy_values() -> None:
    field = SecuritySettings.model_fields["undeclared_pii"]
    assert set(typing.get_args(field.annotation)) == {p.value for p in UndeclaredPii}
