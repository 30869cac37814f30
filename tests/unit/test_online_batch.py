"""Columnar online writes: OnlineBatch, entity_keys, online_batch and the value codec."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.actors.backends._redis_store import _encode, _encode_column
from entai.shared.core import InvalidInputError
from entai.shared.features import (
    Entity,
    FeatureRow,
    FeatureView,
    Field,
    MemoryOnlineStore,
    OnlineBatch,
    ValueType,
    conform,
    entity_key,
    entity_keys,
    from_micros,
    latest_per_key,
    micros,
    online_batch,
    online_rows,
    stamp_created,
)

T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)
USER = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
CATEGORY = Entity(name="category", join_keys=("category",), value_type=ValueType.STRING)
AFFINITY = FeatureView(
    name="affinity",
    entities=(USER, CATEGORY),
    schema=(
        Field(name="share", dtype=ValueType.FLOAT64),
        Field(name="views", dtype=ValueType.INT64),
        Field(name="top", dtype=ValueType.BOOL),
        Field(name="label", dtype=ValueType.STRING),
        Field(name="recent", dtype=ValueType.LIST_INT64),
    ),
    source="events",
    ttl=timedelta(days=30),
)


def test_entity_keys_are_entity_key_per_row() -> None:
    columns: dict[str, list[Any]] = {
        "user_id": [1, 1, 2, np.int64(3), 4.0, True],
        "category": ["books", 'é"q', "books", "x", "", "y"],
    }
    want = [
        entity_key({name: values[i] for name, values in columns.items()})
        for i in range(len(columns["user_id"]))
    ]
    assert entity_keys(columns) == want
    assert want[1] == 'category=s:"\\u00e9\\"q"|user_id=i:1'
    assert entity_keys({"user_id": [True, 1]}) == ["user_id=b:1", "user_id=i:1"]  # not merged
    assert entity_keys({"user_id": []}) == []


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({}, "no join keys"),
        ({"user_id": [1, None]}, "unsupported value None"),
        ({"user_id": [float("nan")]}, "unsupported value nan"),
        ({"user_id": [[1]]}, "unsupported value [1]"),
        ({"bad name": [1]}, "join key name"),
        ({"a": [1], "b": [1, 2]}, "different lengths"),
    ],
)
def test_entity_keys_refuse_what_entity_key_refuses(
    columns: dict[str, list[Any]], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        entity_keys(columns)


def _frame() -> pd.DataFrame:
    rng = random.Random(3)
    n = 200
    return pd.DataFrame(
        {
            "user_id": [rng.randrange(20) for _ in range(n)],
            "category": [rng.choice(["a", "b", "é"]) for _ in range(n)],
            "event_timestamp": [
                pd.Timestamp(T0) + pd.Timedelta(seconds=rng.randrange(50), nanoseconds=999)
                for _ in range(n)
            ],
            "share": [rng.choice([0.25, None, 1.0, 1e-9]) for _ in range(n)],
            "views": pd.array([rng.choice([1, None, 2**62]) for _ in range(n)], "Int64"),
            "top": pd.array([rng.choice([True, False, None]) for _ in range(n)], "boolean"),
            "label": [rng.choice(["x", None, ""]) for _ in range(n)],
            "recent": [rng.choice([[1, 2], [], None]) for _ in range(n)],
        }
    )


def test_online_batch_holds_the_rows_online_rows_builds() -> None:
    shaped = stamp_created(conform(AFFINITY, _frame()), T0)
    latest = latest_per_key(shaped, AFFINITY.join_keys)
    batch = online_batch(AFFINITY, latest)
    assert len(batch) == len(latest) and batch.view == "affinity"
    assert batch.features == ("share", "views", "top", "label", "recent")
    assert batch.rows() == online_rows(AFFINITY, latest)
    assert from_micros(batch.created_us[0]) == T0
    # Ray Data hands frames back with Arrow timestamp columns.
    arrow = latest.astype({"event_timestamp": "timestamp[ns, tz=UTC][pyarrow]"})
    assert online_batch(AFFINITY, arrow) == batch


def test_a_batch_is_its_rows_and_back() -> None:
    rows = [
        FeatureRow("v", f"k{i % 3}", {"x": i, "y": [i]}, T0 + timedelta(seconds=i), T0)
        for i in range(7)
    ]
    batch = OnlineBatch.of_rows("v", rows)
    assert batch.rows() == rows
    assert batch.take([6, 0]).rows() == [rows[6], rows[0]]
    assert micros(T0) == batch.created_us[0] and from_micros(micros(T0)) == T0
    store, reference = MemoryOnlineStore(), MemoryOnlineStore()
    assert store.write_batch(batch) == reference.write(rows) == 7
    assert sorted(store.scan(), key=str) == sorted(reference.scan(), key=str)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"view": "a:b"}, "OnlineBatch.view"),
        ({"features": ("@e",)}, "invalid names"),
        ({"columns": [[1]]}, "need as many columns"),
        ({"event_us": [1, 2]}, "need as many columns"),
        ({"keys": [""]}, "non-empty strings"),
    ],
)
def test_a_malformed_batch_is_refused_in_one_line(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {
        "view": "v",
        "keys": ["k"],
        "features": ("x",),
        "columns": [[1]],
        "event_us": [1],
        "created_us": [1],
    }
    if "columns" in kwargs:
        kwargs = {"columns": [[1], [2]]}
    fields.update(kwargs)
    with pytest.raises(InvalidInputError, match=message):
        OnlineBatch(**fields)


def test_rows_of_several_views_or_features_are_not_one_batch() -> None:
    rows = [FeatureRow("v", "k", {"x": 1}, T0, T0), FeatureRow("v", "j", {"y": 1}, T0, T0)]
    with pytest.raises(InvalidInputError, match="has \\['y'\\]"):
        OnlineBatch.of_rows("v", rows)


def test_a_column_is_encoded_as_each_value_alone() -> None:
    row = FeatureRow("v", "k", {}, T0, T0)
    values: list[Any] = [
        1,
        -(2**63),
        0.1,
        1e300,
        -0.0,
        'é\n"',
        "",
        True,
        False,
        None,
        [1, 2],
        ["a", 'b"'],
        [],
        np.int64(5),
        np.float64(0.5),
        np.bool_(True),
    ]
    encoded = _encode_column("v", "x", values)
    assert encoded == [_encode(row, "x", v) for v in values]
    assert [json.loads(e) for e in encoded[:13]] == values[:13]
    with pytest.raises(InvalidInputError, match="feature v:x has unsupported value type object"):
        _encode_column("v", "x", [object()])
