"""List-valued features end to end: definitions, conformance, Parquet, the PIT join,
online rows, the shard read merge and the HTTP (entai and Feast) and gRPC encodings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from read_services import read_services

from entai.actors.features._shard_calls import merge_parts, split_by_shard
from entai.deployments import grpc_messages as messages
from entai.deployments.feast_protocol import feast_response
from entai.deployments.platform import PlatformServices
from entai.deployments.proto import entai_pb2 as pb
from entai.deployments.schemas import (
    FeastOnlineFeaturesRequest,
    FeastOnlineFeaturesResponse,
    OnlineFeaturesRequest,
)
from entai.pipelines.features._training_set import _from_blob, _to_blob
from entai.shared.core import ContractViolationError, DefinitionError, PointInTimeJoinError
from entai.shared.data import Lake
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureRow,
    FeatureService,
    FeatureStatus,
    FeatureView,
    FeatureViewProjection,
    Field,
    MemoryOnlineStore,
    OfflineStore,
    ReadRequest,
    ReadResult,
    ValueType,
    compute_view,
    conform,
    entity_key,
    latest_per_key,
    online_rows,
    point_in_time_join,
    rows_file_id,
)
from entai.shared.governance import Decision

USER = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
RECENT = FeatureView(
    name="recent",
    entities=(USER,),
    schema=(
        Field(name="products", dtype=ValueType.LIST_INT64),
        Field(name="tags", dtype=ValueType.LIST_STRING),
        Field(name="views", dtype=ValueType.INT64),
    ),
    source="events",
    ttl=timedelta(hours=2),
)
T0 = pd.Timestamp("2026-11-01T10:00:00Z")
H = pd.Timedelta(hours=1)


def _frame(**columns: list[Any]) -> pd.DataFrame:
    base: dict[str, list[Any]] = {
        "user_id": [1, 1, 2],
        "event_timestamp": [T0, T0 + H, T0],
        "products": [[3, 1, 2], np.array([2**62, -1]), None],
        "tags": [("a", "b"), [], ["é", "x y"]],
        "views": [3, 2, 0],
    }
    base.update(columns)
    lists = {"products", "tags"}
    return pd.DataFrame(
        {k: pd.Series(v, dtype=object if k in lists else None) for k, v in base.items()}
    )


# --- definitions ------------------------------------------------------------------------


def test_list_types_have_clear_names_and_arrow_dtypes() -> None:
    assert ValueType("list<string>") is ValueType.LIST_STRING
    assert ValueType("list<int64>") is ValueType.LIST_INT64
    assert ValueType.LIST_INT64.is_list and not ValueType.INT64.is_list
    assert ValueType.LIST_STRING.element_type is ValueType.STRING
    assert ValueType.FLOAT64.element_type is None
    assert str(ValueType.LIST_INT64.pandas_dtype) == "list<item: int64>[pyarrow]"
    assert Field(name="x", dtype=cast("Any", "list<string>")).dtype is ValueType.LIST_STRING


def test_a_join_key_cannot_be_a_list() -> None:
    with pytest.raises(DefinitionError, match="join keys cannot be lists"):
        Entity(name="basket", join_keys=("items",), value_type=ValueType.LIST_INT64)


def test_an_unknown_list_type_is_refused_naming_the_choices() -> None:
    with pytest.raises(DefinitionError, match=r"list<int64>"):
        Field(name="x", dtype=cast("Any", "list<float64>"))


def test_definitions_without_lists_keep_their_content_hash() -> None:
    # The hash main had before list types existed (same definitions, same code).
    category = Entity(name="category", join_keys=("category",), value_type=ValueType.STRING)
    view = FeatureView(
        name="stats",
        entities=(USER, category),
        schema=(
            Field(name="views", dtype=ValueType.FLOAT64),
            Field(name="segment", dtype=ValueType.STRING),
            Field(name="n", dtype=ValueType.INT64),
        ),
        source="events",
        ttl=timedelta(days=30),
    )
    digest = Definitions(entities=(USER, category), views=(view,)).content_hash()
    assert digest == "bfd2dec7004a47395c9687fee4366088e092bd9403b5255e6cc38d70c884ab06"


# --- conformance: strict element types ----------------------------------------------------


def test_conform_gives_arrow_list_columns_with_exact_python_lists() -> None:
    out = conform(RECENT, _frame())
    assert str(out["products"].dtype) == "list<item: int64>[pyarrow]"
    assert str(out["tags"].dtype) == "list<item: string>[pyarrow]"
    assert out["products"].iloc[0] == [3, 1, 2]  # order kept
    assert out["products"].iloc[1] == [2**62, -1]
    assert out["products"].isna().tolist() == [False, False, True]
    assert out["tags"].tolist() == [["a", "b"], [], ["é", "x y"]]


@pytest.mark.parametrize(
    ("column", "cells", "message"),
    [
        ("products", [[1.5], [1], [2]], "list<item: double>"),
        ("products", [[True], [1], [2]], "got bool"),
        ("products", [["1"], [1], [2]], "Could not convert '1'"),
        ("products", [[True], [False], []], "list<item: bool>"),
        ("products", [["1"], [], []], "list<item: string>"),
        ("products", [[1, "a"], [1], [2]], "mixed or unsupported"),
        ("products", [[1, None], [1], [2]], "null element"),
        ("products", [[2**64], [1], [2]], "mixed or unsupported"),
        ("products", [5, [1], [2]], r"holds 5 \(int\)"),
        ("tags", ["ab", [], []], r"holds 'ab' \(str\)"),  # not a list of characters
        ("tags", [[1], [], []], "list<item: int64>"),
        ("tags", [{"a": 1}, [], []], r"holds \{'a': 1\} \(dict\)"),
    ],
)
def test_bad_list_values_are_refused_naming_view_and_column(
    column: str, cells: list[Any], message: str
) -> None:
    with pytest.raises(ContractViolationError, match=message) as info:
        conform(RECENT, _frame(**{column: cells}))
    assert f"feature view 'recent': column {column!r}" in info.value.message
    assert info.value.details["field"] == column


def test_a_transform_returning_bad_lists_is_a_definition_error() -> None:
    view = FeatureView(
        name="bad",
        entities=(USER,),
        schema=(Field(name="products", dtype=ValueType.LIST_INT64),),
        source="events",
        transform=lambda raw: raw.assign(products=[["x"]] * len(raw)),
    )
    raw = pd.DataFrame({"user_id": [1], "event_timestamp": [T0]})
    with pytest.raises(DefinitionError, match=r"transform output is invalid.*'products'"):
        compute_view(view, raw)


def test_rows_with_list_features_get_a_replay_stable_file_id() -> None:
    rows = conform(RECENT, _frame())
    again = conform(RECENT, _frame()).iloc[::-1]
    changed = conform(RECENT, _frame(products=[[3, 2, 1], [2**62, -1], None]))
    assert rows_file_id("s", rows) == rows_file_id("s", again)
    assert rows_file_id("s", rows) != rows_file_id("s", changed)


# --- offline Parquet ---------------------------------------------------------------------


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    store = OfflineStore(Lake(str(tmp_path)))
    created = datetime(2026, 11, 2, tzinfo=UTC)
    assert store.write(RECENT, _frame().assign(created_timestamp=created)) == 3
    back = store.read(RECENT).sort_values(["user_id", "event_timestamp"]).reset_index(drop=True)
    assert str(back["products"].dtype) == "list<item: int64>[pyarrow]"
    assert back["products"].iloc[0] == [3, 1, 2]
    assert back["products"].iloc[1] == [2**62, -1]
    assert back["products"].isna().tolist() == [False, False, True]
    assert back["tags"].tolist() == [["a", "b"], [], ["é", "x y"]]
    assert back["views"].tolist() == [3, 2, 0]
    only = store.read(RECENT, columns=["tags"], start=T0 + H)
    assert only["tags"].tolist() == [[]]


# --- point-in-time join -----------------------------------------------------------------


def test_pit_join_returns_the_winning_lists_exactly_with_ttl_and_ties() -> None:
    table = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "event_timestamp": [T0, T0 + H, T0 + H, T0],
            # user 1 at T0+H: two rows, the later created one wins the tie
            "created_timestamp": [T0, T0 + H, T0 + 2 * H, T0],
            "products": [[1], [2, 3], [4, 5, 6], []],
            "tags": [["a"], ["tie-loser"], ["tie-winner"], ["z"]],
            "views": [1, 2, 3, 4],
        }
    )
    entity_df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "event_timestamp": [
                T0 + pd.Timedelta(minutes=30),  # first row only
                T0 + H,  # inclusive: the tie at T0+H, later created wins
                T0 + 3 * H,  # exactly ttl (2 h) after the winner: still counts
                T0 + 2 * H + pd.Timedelta(microseconds=1),  # just past ttl
                T0 - H,  # before any row
                T0,  # unknown user
            ],
            "label": [0, 1, 0, 1, 0, 1],
        }
    )
    out = point_in_time_join(entity_df, [(FeatureViewProjection.of(RECENT), table)])
    assert out["products"].tolist()[:3] == [[1], [4, 5, 6], [4, 5, 6]]
    assert out["tags"].tolist()[:3] == [["a"], ["tie-winner"], ["tie-winner"]]
    assert out["products"].isna().tolist() == [False, False, False, True, True, True]
    assert out["label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert str(out["products"].dtype) == "list<item: int64>[pyarrow]"
    served = point_in_time_join(
        entity_df.iloc[[1]], [(FeatureViewProjection.of(RECENT), table)], as_served=True
    )
    assert served["tags"].tolist() == [["tie-loser"]]  # the winner was written after T


def test_pit_join_refuses_a_feature_table_with_bad_lists() -> None:
    table = pd.DataFrame(
        {"user_id": [1], "event_timestamp": [T0], "products": [["x"]], "tags": [[]], "views": [1]}
    )
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [T0]})
    with pytest.raises(PointInTimeJoinError, match=r"recent\.products"):
        point_in_time_join(entity_df, [(FeatureViewProjection.of(RECENT), table)])


# --- online rows and the online store ---------------------------------------------------


def test_online_rows_carry_python_lists_from_arrow_or_numpy_cells() -> None:
    shaped = conform(RECENT, _frame()).assign(created_timestamp=T0)
    rows = online_rows(RECENT, latest_per_key(shaped, RECENT.join_keys))
    by_key = {r.entity_key: dict(r.values) for r in rows}
    assert by_key == {
        "user_id=i:1": {"products": [2**62, -1], "tags": [], "views": 2},
        "user_id=i:2": {"products": None, "tags": ["é", "x y"], "views": 0},
    }
    assert type(by_key["user_id=i:1"]["products"][0]) is int
    # Ray Data hands frames back with list cells as numpy arrays in object columns.
    numpy_cells = shaped.astype({"products": object, "tags": object})
    assert isinstance(numpy_cells["products"].iloc[0], np.ndarray)
    again = online_rows(RECENT, latest_per_key(numpy_cells, RECENT.join_keys))
    assert {r.entity_key: dict(r.values) for r in again} == by_key


def test_memory_store_keeps_lists_exact_and_last_write_wins() -> None:
    store = MemoryOnlineStore()
    key = entity_key({"user_id": 1})
    t = T0.to_pydatetime()
    store.write([FeatureRow("recent", key, {"products": [5, 4], "tags": []}, t, t)])
    store.write([FeatureRow("recent", key, {"products": [9], "tags": ["old"]}, t - H, t)])
    res = store.read("recent", [key, "user_id=i:9"], ["products", "tags"], ttl=None, now=t)
    assert res.values == [[[5, 4], None], [[], None]]
    assert res.statuses[0] == [FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND]


def test_shard_merge_keeps_list_values_whole() -> None:
    # Lists of equal length are what numpy would broadcast into a 2-d assignment.
    keys = [f"user_id=i:{i}" for i in range(6)]
    request = ReadRequest("recent", keys, ["products"], None)
    ids = ["s0", "s1", "s2"]
    now = T0.to_pydatetime()
    parts, calls = split_by_shard([request], ids, now)
    assert len(parts) > 1  # the keys spread over several shards
    replies = []
    for sid in calls:
        (_, _, sub) = parts[sid][0]
        values = [[int(k.rsplit(":", 1)[1]), 0] for k in sub.keys]
        n = len(sub.keys)
        replies.append(
            [ReadResult(("products",), [values], [[FeatureStatus.PRESENT] * n], [now] * n)]
        )
    (merged,) = merge_parts([request], parts, replies)
    assert merged.values == [[[i, 0] for i in range(6)]]


# --- HTTP (entai, Feast) and gRPC encodings --------------------------------------------


class _Auth:
    def authorize_features(
        self, token: str, features: dict[str, Any], resource: str = "*"
    ) -> Decision:
        return Decision(True, "analyst", "features:read", resource, "test", ())


@pytest.fixture
def services() -> PlatformServices:
    t = datetime.now(UTC)  # within the view's ttl
    rows = [
        FeatureRow("recent", entity_key({"user_id": 1}), {"products": [7, 3], "tags": ["a"]}, t, t),
        FeatureRow("recent", entity_key({"user_id": 2}), {"products": [], "tags": []}, t, t),
    ]
    service = FeatureService(name="recs", features=(RECENT[["products", "tags"]],))
    definitions = Definitions(entities=(USER,), views=(RECENT,), services=(service,))
    return read_services(rows, definitions, service, _Auth())


ENTITIES = {"user_id": [1, 2, 3]}


def test_entai_answer_carries_lists_as_json_arrays(services: PlatformServices) -> None:
    body = OnlineFeaturesRequest(entities=ENTITIES, feature_service="recs")
    answer = services.online_features("token", body)
    assert answer["metadata"]["feature_names"] == ["products", "tags"]
    products, tags = answer["results"]
    assert products["values"] == [[7, 3], [], None]
    assert tags["values"] == [["a"], [], None]
    assert products["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]


def test_feast_answer_carries_lists_as_json_arrays(services: PlatformServices) -> None:
    request = FeastOnlineFeaturesRequest(entities=ENTITIES, feature_service="recs")
    answer = feast_response(services.read_online("token", request), request)
    parsed = FeastOnlineFeaturesResponse.model_validate(answer).model_dump(exclude_none=True)
    assert parsed["metadata"]["feature_names"] == ["user_id", "products", "tags"]
    assert [r["values"] for r in parsed["results"]] == [
        [1, 2, 3],
        [[7, 3], [], None],
        [["a"], [], None],
    ]


def test_grpc_answer_sets_the_list_fields(services: PlatformServices) -> None:
    body = OnlineFeaturesRequest(entities=ENTITIES, feature_service="recs")
    reply = messages.online_features_response(services.online_features("token", body))
    products, tags = reply.results
    assert [v.WhichOneof("kind") for v in products.values] == [
        "int64_list_value",
        "int64_list_value",  # the empty list takes its feature's list field
        None,
    ]
    assert list(products.values[0].int64_list_value.values) == [7, 3]
    assert list(products.values[1].int64_list_value.values) == []
    assert [v.WhichOneof("kind") for v in tags.values] == [
        "string_list_value",
        "string_list_value",
        None,
    ]
    assert list(tags.values[0].string_list_value.values) == ["a"]
    wire = pb.GetOnlineFeaturesResponse.FromString(reply.SerializeToString())
    assert list(wire.results[0].values[0].int64_list_value.values) == [7, 3]


def test_grpc_feature_value_of_lists() -> None:
    assert messages.feature_value([1, 2]).int64_list_value.values == [1, 2]
    assert messages.feature_value(["x"]).string_list_value.values == ["x"]
    empty = messages.feature_value([], empty_list="int64_list_value")
    assert empty.WhichOneof("kind") == "int64_list_value"
    assert messages.feature_value([]).WhichOneof("kind") == "string_list_value"
    with pytest.raises(TypeError, match="elements of types"):
        messages.feature_value([1, "a"])
    with pytest.raises(TypeError, match="elements of types"):
        messages.feature_value([True])


def test_list_columns_survive_the_ray_join_blobs() -> None:
    shaped = conform(RECENT, _frame())
    back = _from_blob(_to_blob(shaped))
    assert back["products"].tolist()[:2] == [[3, 1, 2], [2**62, -1]]
    assert back["tags"].tolist() == [["a", "b"], [], ["é", "x y"]]
