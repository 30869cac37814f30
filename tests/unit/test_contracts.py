"""Data contracts: declaration, validation of the declaration, versioning."""

from __future__ import annotations

import pytest

from entai.shared.core import ConflictError, DefinitionError, NotFoundError
from entai.shared.data import (
    Column,
    ColumnType,
    ContractRegistry,
    DataContract,
    MaskingOperator,
    PiiClass,
    breaking_changes,
    evolve,
)

YAML = """
source: orders
purpose: fraud detection
retention_days: 365
event_time: ts
key: [order_id]
columns:
  - {name: order_id, type: string, nullable: false, regex: "o[0-9]+"}
  - {name: user_id, type: int64, pii: identifier}
  - {name: amount, type: float64, min: 0, max: 100}
  - {name: status, type: string, allowed: [new, paid]}
  - {name: note, type: string, pii: free_text}
  - {name: ts, type: timestamp, nullable: false}
"""


def contract(**changes: object) -> DataContract:
    return DataContract.from_yaml(YAML).model_copy(update=changes)


def with_columns(*columns: Column) -> DataContract:
    base = DataContract.from_yaml(YAML)
    return DataContract.model_validate({**base.model_dump(), "columns": columns})


def test_yaml_round_trip_and_defaults() -> None:
    c = DataContract.from_yaml(YAML)
    assert DataContract.from_yaml(c.to_yaml()) == c
    assert c.column("user_id").operator == MaskingOperator.HMAC
    assert c.column("note").operator == MaskingOperator.REDACT
    assert c.column("amount").operator == MaskingOperator.NONE
    assert c.column("ts").type.arrow_type().tz == "UTC"


def test_python_declaration_equals_yaml() -> None:
    c = DataContract(
        source="orders",
        purpose="fraud detection",
        retention_days=365,
        event_time="ts",
        key=("order_id",),
        columns=(
            Column(name="order_id", type=ColumnType.STRING, nullable=False, regex="o[0-9]+"),
            Column(name="user_id", type=ColumnType.INT64, pii=PiiClass.IDENTIFIER),
            Column(name="amount", type=ColumnType.FLOAT64, min=0, max=100),
            Column(name="status", type=ColumnType.STRING, allowed=("new", "paid")),
            Column(name="note", type=ColumnType.STRING, pii=PiiClass.FREE_TEXT),
            Column(name="ts", type=ColumnType.TIMESTAMP, nullable=False),
        ),
    )
    assert c.fingerprint == DataContract.from_yaml(YAML).fingerprint


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("event_time: ts", "event_time: amount"),
        ('regex: "o[0-9]+"', 'regex: "o[0-9"'),
        ("pii: identifier}", "pii: identifier, masking: none}"),
        ("key: [order_id]", "key: [nope]"),
        ("min: 0, max: 100", "min: 5, max: 1"),
        ("allowed: [new, paid]", "allowed: []"),
    ],
)
def test_invalid_declarations_are_refused(edit: str, needle: str) -> None:
    with pytest.raises(DefinitionError):
        DataContract.from_yaml(YAML.replace(edit, needle))


def test_key_cannot_use_a_merging_operator() -> None:
    with pytest.raises(DefinitionError, match="order_id"):
        DataContract.from_yaml(
            YAML.replace('regex: "o[0-9]+"}', 'regex: "o[0-9]+", pii: sensitive, masking: mask}')
        )


def test_unknown_column_lookup() -> None:
    with pytest.raises(NotFoundError):
        contract().column("nope")


def test_removed_column_and_narrowed_type_are_breaking() -> None:
    old = contract()
    columns = [c for c in old.columns if c.name != "status"]
    columns[2] = Column(name="amount", type=ColumnType.INT64, min=0, max=100)
    problems = breaking_changes(old, with_columns(*columns))
    assert any("'status' removed" in p for p in problems)
    assert any("'amount' type narrowed" in p for p in problems)


def test_widening_and_new_nullable_column_are_compatible() -> None:
    old = contract()
    columns = list(old.columns)
    columns[1] = Column(name="user_id", type=ColumnType.FLOAT64, pii=PiiClass.IDENTIFIER)
    columns.append(Column(name="extra", type=ColumnType.STRING))
    assert breaking_changes(old, with_columns(*columns)) == []


def test_tightened_rules_are_breaking() -> None:
    old = contract()
    columns = list(old.columns)
    columns[2] = Column(name="amount", type=ColumnType.FLOAT64, min=1, max=100)
    columns[3] = Column(name="status", type=ColumnType.STRING, allowed=("new",))
    problems = breaking_changes(old, with_columns(*columns))
    assert len(problems) == 2


def test_evolve_refuses_breaking_unless_forced() -> None:
    old = contract()
    new = with_columns(*[c for c in old.columns if c.name != "status"])
    with pytest.raises(ConflictError, match="status"):
        evolve(old, new)
    forced = evolve(old, new, force=True)
    assert forced.version == 2


def test_evolve_unchanged_keeps_version_and_compatible_bumps_it() -> None:
    old = contract()
    assert evolve(old, contract()) is old
    newer = evolve(old, contract(purpose="fraud detection and support"))
    assert newer.version == 2


def test_registry_keeps_history() -> None:
    registry = ContractRegistry()
    registry.register(contract())
    registry.register(contract(purpose="another purpose"))
    registry.register(contract(purpose="another purpose"))
    assert registry.versions("orders") == [1, 2]
    assert registry.get("orders").purpose == "another purpose"
    assert registry.get("orders", 1).purpose == "fraud detection"
    with pytest.raises(NotFoundError):
        registry.get("orders", 9)
    with pytest.raises(ConflictError):
        registry.register(with_columns(*contract().columns[:-2], contract().columns[-1]))


def test_protected_columns_and_segments_are_the_evaluation_attributes() -> None:
    marked = DataContract.from_yaml(
        YAML.replace(
            "{name: status, type: string, allowed: [new, paid]}",
            "{name: status, type: string, allowed: [new, paid], protected: true}",
        )
        + "segments: [amount, user_id]\n"
    )
    assert marked.column("status").protected
    assert marked.evaluation_attributes == ("user_id", "amount", "status")  # column order
    assert DataContract.from_yaml(marked.to_yaml()) == marked
    assert DataContract.from_yaml(YAML).evaluation_attributes == ()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("segments: [nope]\n", "segment column 'nope' is not declared"),
        ("segments: [note]\n", "segment column 'note' uses masking redact"),
        ("segments: [amount, amount]\n", "segments lists a column twice"),
    ],
)
def test_invalid_segments_are_refused(extra: str, needle: str) -> None:
    with pytest.raises(DefinitionError, match=needle):
        DataContract.from_yaml(YAML + extra)


def test_a_protected_column_must_keep_its_groups_apart() -> None:
    with pytest.raises(ValueError, match="protected attribute uses masking redact"):
        Column(name="sex", type=ColumnType.STRING, pii=PiiClass.SENSITIVE, protected=True)
    hashed = Column(
        name="sex",
        type=ColumnType.STRING,
        pii=PiiClass.SENSITIVE,
        masking=MaskingOperator.HMAC,
        protected=True,
    )
    assert hashed.operator == MaskingOperator.HMAC


def test_fingerprint_of_a_contract_without_marks_is_unchanged() -> None:
    """The value this contract had before ``protected``/``segments`` existed (main at
    f8da74a): contracts that use neither keep their fingerprint."""
    plain = DataContract.from_yaml(YAML)
    assert plain.fingerprint == "4ae4a07cea6264208fec6ccd1c3b8bfcb3a74d5ffec649928a529f1bce4477df"
    assert plain.model_copy(update={"segments": ("amount",)}).fingerprint != plain.fingerprint
