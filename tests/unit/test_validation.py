"""Vectorised validation: every rule quarantines its bad row with the right reason."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from entai.shared.core import ContractViolationError
from entai.shared.data import (
    ColumnType,
    DataContract,
    check_schema,
    coerce_column,
    pseudonym,
    repeated_keys,
    validate_and_mask,
)

KEY = b"unit-test-key-0123456789abcdef"
CONTRACT = DataContract.from_yaml(
    """
source: orders
purpose: test
retention_days: 30
event_time: ts
key: [order_id]
columns:
  - {name: order_id, type: string, nullable: false, regex: "o[0-9]+"}
  - {name: user_id, type: int64, pii: identifier, nullable: false}
  - {name: email, type: string, pii: sensitive, masking: mask}
  - {name: amount, type: float64, min: 0, max: 100}
  - {name: status, type: string, allowed: [new, paid]}
  - {name: paid, type: bool}
  - {name: note, type: string, pii: free_text}
  - {name: ts, type: timestamp}
"""
)
GOOD = {
    "order_id": "o1",
    "user_id": "7",
    "email": "jane.doe@example.com",
    "amount": "10.5",
    "status": "new",
    "paid": "true",
    "note": "call me on 555-867-5309",
    "ts": "2024-03-01T10:00:00Z",
}


def table(*rows: dict[str, str | None]) -> pa.Table:
    return pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in GOOD})


def row(n: int, **changes: str | None) -> dict[str, str | None]:
    return {**GOOD, "order_id": f"o{n}", **changes}


@pytest.mark.parametrize(
    ("changes", "rule", "column"),
    [
        ({"user_id": "seven"}, "type", "user_id"),
        ({"amount": "1.2.3"}, "type", "amount"),
        ({"paid": "maybe"}, "type", "paid"),
        ({"ts": "yesterday"}, "type", "ts"),
        ({"user_id": None}, "not_null", "user_id"),
        ({"ts": None}, "not_null", "ts"),
        ({"amount": "-1"}, "range", "amount"),
        ({"amount": "100.01"}, "range", "amount"),
        ({"status": "lost"}, "category", "status"),
        ({"order_id": "x1"}, "regex", "order_id"),
        ({"order_id": "o1"}, "unique", "order_id"),
    ],
)
def test_each_rule_quarantines_its_row(
    changes: dict[str, str | None], rule: str, column: str
) -> None:
    accepted, quarantined = validate_and_mask(
        table(row(1), row(2, **changes)), CONTRACT, KEY, batch_id="b1"
    )
    assert accepted.num_rows == 1
    q = quarantined.to_pylist()
    assert len(q) == 1
    assert (q[0]["_quarantine_rule"], q[0]["_quarantine_column"]) == (rule, column)
    assert q[0]["_quarantine_reason"].startswith(f"{rule}({column})")
    assert q[0]["_batch_id"] == "b1"


def test_all_failures_are_listed_and_first_is_named() -> None:
    _, quarantined = validate_and_mask(
        table(row(1, order_id="bad", amount="-5", status="lost")), CONTRACT, KEY
    )
    q = quarantined.to_pylist()[0]
    assert q["_quarantine_rule"] == "regex"
    assert q["_quarantine_reason"].split("; ") == [
        "regex(order_id): does not match the pattern",
        "range(amount): outside [0.0, 100.0]",
        "category(status): not an allowed value",
    ]


def test_mixed_batch_keeps_the_invariant_and_types() -> None:
    rows = [row(i) for i in range(50)] + [row(100 + i, amount="-1") for i in range(7)]
    accepted, quarantined = validate_and_mask(table(*rows), CONTRACT, KEY)
    assert (accepted.num_rows, quarantined.num_rows) == (50, 7)
    assert accepted.schema.field("amount").type == pa.float64()
    assert accepted.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert accepted.schema.field("paid").type == pa.bool_()
    assert set(quarantined.schema.names) >= {"_quarantine_rule", "_quarantine_reason"}


def test_pii_is_masked_in_accepted_and_quarantined_rows() -> None:
    accepted, quarantined = validate_and_mask(table(row(1), row(2, amount="-1")), CONTRACT, KEY)
    for out in (accepted, quarantined):
        text = str(out.to_pylist())
        assert "jane.doe@example.com" not in text
        assert "555-867-5309" not in text
        assert "[REDACTED:PHONE]" in text
    assert accepted.column("user_id").to_pylist() == [pseudonym("7", KEY)]
    assert quarantined.column("user_id").to_pylist() == [pseudonym(7, KEY)]


def test_timestamp_formats_and_naive_means_utc() -> None:
    values = pa.array(["2024-01-01T00:00:00Z", "2024-01-01 02:00:00+02:00", "2024-01-01", None])
    out = coerce_column(values, ColumnType.TIMESTAMP).to_pylist()
    assert out[0] == out[1] == out[2]
    assert out[3] is None


def test_float_to_int_only_when_integral() -> None:
    out = coerce_column(pa.array([1.0, 2.5, None]), ColumnType.INT64)
    assert out.to_pylist() == [1, None, None]


def test_pandas_in_pandas_out() -> None:
    frame = pd.DataFrame([row(1), row(2, status="lost")])
    accepted, quarantined = validate_and_mask(frame, CONTRACT, KEY)
    assert isinstance(accepted, pd.DataFrame)
    assert list(quarantined["_quarantine_rule"]) == ["category"]


def test_schema_problems_are_file_level_errors() -> None:
    with pytest.raises(ContractViolationError, match="missing column"):
        check_schema(table(row(1)).drop(["note"]).schema, CONTRACT, where="f.csv")
    with pytest.raises(ContractViolationError, match="not declared"):
        check_schema(table(row(1)).append_column("x", pa.array(["1"])).schema, CONTRACT, where="f")
    typed = table(row(1)).set_column(7, "ts", pa.array([1.5]))
    with pytest.raises(ContractViolationError, match="ts"):
        check_schema(typed.schema, CONTRACT, where="f")


def test_empty_batch() -> None:
    accepted, quarantined = validate_and_mask(table(), CONTRACT, KEY)
    assert accepted.num_rows == quarantined.num_rows == 0


def test_repeated_keys_marks_every_later_copy_of_a_key() -> None:
    keys = pa.table(
        {
            "a": [1, 2, 1, 1, None, None, 2, 3],
            "b": ["x", "x", "y", "x", "x", "x", None, "z"],
        }
    )
    assert repeated_keys(keys).tolist() == [False, False, False, True, False, True, False, False]
    assert repeated_keys(keys.select(["a"])).tolist() == [
        *[False, False, True, True, False, True, True, False]
    ]
    assert repeated_keys(keys.slice(0, 0)).tolist() == []


def test_key_uniqueness_can_be_left_to_the_caller() -> None:
    rows = table(row(1), row(2), row(1, amount="20"))
    accepted, quarantined = validate_and_mask(rows, CONTRACT, KEY, unique_key=False)
    assert (accepted.num_rows, quarantined.num_rows) == (3, 0)
    accepted, quarantined = validate_and_mask(rows, CONTRACT, KEY)
    assert quarantined.column("_quarantine_rule").to_pylist() == ["unique"]
