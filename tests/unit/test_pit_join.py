"""Point-in-time join: adversarial cases and randomized data against a brute-force oracle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.shared.core import NotFoundError, PointInTimeJoinError
from entai.shared.features import (
    Entity,
    FeatureView,
    Field,
    ValueType,
    hash_partition,
    point_in_time_join,
)

USER = Entity("user", ("user_id",))
BASE = pd.Timestamp("2024-03-01", tz="UTC")
TS = "datetime64[ns, UTC]"


def at(hours: float) -> pd.Timestamp:
    return BASE + pd.Timedelta(hours=hours)


def make_view(ttl: timedelta | None = None, name: str = "stats") -> FeatureView:
    return FeatureView(
        name,
        (USER,),
        (Field("x", ValueType.FLOAT64), Field("n", ValueType.INT64)),
        source="events",
        ttl=ttl,
    )


def table(rows: list[tuple[int, float, float, float | None, int | None]]) -> pd.DataFrame:
    """Rows of (user_id, event hour, created hour, x, n)."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": pd.Series([at(r[1]) for r in rows], dtype=TS),
            "created_timestamp": pd.Series([at(r[2]) for r in rows], dtype=TS),
            "x": pd.array([r[3] for r in rows], dtype="float64"),
            "n": pd.array([r[4] for r in rows], dtype="Int64"),
        }
    )


def entities(rows: list[tuple[Any, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": pd.Series([at(r[1]) for r in rows], dtype=TS),
            "label": np.arange(len(rows)),
        }
    )


def oracle(
    entity_df: pd.DataFrame, feats: pd.DataFrame, view: FeatureView, *, as_served: bool
) -> dict[str, list[Any]]:
    """Brute force, straight from DESIGN §2: every entity row against every feature row."""
    out: dict[str, list[Any]] = {f: [] for f in view.feature_names}
    for _, e in entity_df.iterrows():
        t = e["event_timestamp"]
        best: tuple[Any, ...] | None = None
        for j in range(len(feats)):
            f = feats.iloc[j]
            if pd.isna(e["user_id"]) or f["user_id"] != e["user_id"]:
                continue
            if f["event_timestamp"] > t:
                continue
            if view.ttl is not None and f["event_timestamp"] < t - view.ttl:
                continue
            if as_served and f["created_timestamp"] > t:
                continue
            cand = (f["event_timestamp"], f["created_timestamp"], j)
            if best is None or cand > best:
                best = cand
        for name in view.feature_names:
            out[name].append(None if best is None else feats.iloc[best[2]][name])
    return out


def assert_matches_oracle(
    entity_df: pd.DataFrame, feats: pd.DataFrame, view: FeatureView, *, as_served: bool
) -> pd.DataFrame:
    got = point_in_time_join(
        entity_df, [(view[list(view.feature_names)], feats)], as_served=as_served
    )
    want = oracle(entity_df, feats, view, as_served=as_served)
    for name, values in want.items():
        expected = pd.array(values, dtype=view.field(name).dtype.pandas_dtype)
        pd.testing.assert_extension_array_equal(
            pd.array(got[name].to_numpy(), dtype=expected.dtype), expected
        )
    return got


def values(df: pd.DataFrame, column: str) -> list[Any]:
    return [None if pd.isna(v) else v for v in df[column]]


# --- the named adversarial cases ------------------------------------------------


def test_event_at_exactly_t_is_included() -> None:
    got = point_in_time_join(
        entities([(1, 5.0)]), [(make_view()[["x"]], table([(1, 5.0, 5.0, 1.5, 1)]))]
    )
    assert values(got, "x") == [1.5]


def test_equal_event_time_latest_created_wins() -> None:
    feats = table([(1, 2.0, 9.0, 20.0, 2), (1, 2.0, 3.0, 10.0, 1)])
    view = make_view()
    assert values(
        assert_matches_oracle(entities([(1, 12.0)]), feats, view, as_served=False), "x"
    ) == [20.0]
    # as served at T=5 only the row created at 3 existed
    assert values(
        assert_matches_oracle(entities([(1, 5.0)]), feats, view, as_served=True), "x"
    ) == [10.0]


def test_full_tie_goes_to_the_later_table_row() -> None:
    feats = table([(1, 2.0, 3.0, 10.0, 1), (1, 2.0, 3.0, 11.0, 2)])
    got = assert_matches_oracle(entities([(1, 4.0)]), feats, make_view(), as_served=True)
    assert values(got, "x") == [11.0]


def test_ttl_bound_is_inclusive() -> None:
    view = make_view(ttl=timedelta(hours=3))
    feats = table([(1, 2.0, 2.0, 1.0, 1), (2, 1.999, 1.999, 2.0, 2)])
    got = assert_matches_oracle(
        entities([(1, 5.0), (2, 4.999), (2, 5.0)]), feats, view, as_served=False
    )
    assert values(got, "x") == [1.0, 2.0, None]


def test_ttl_applies_to_the_winner_not_an_older_row() -> None:
    # The latest row is stale; an older row must not be picked in its place.
    view = make_view(ttl=timedelta(hours=1))
    feats = table([(1, 1.0, 1.0, 1.0, 1), (1, 2.0, 2.0, 2.0, 2)])
    got = assert_matches_oracle(entities([(1, 10.0), (1, 2.5)]), feats, view, as_served=False)
    assert values(got, "x") == [None, 2.0]


def test_late_arriving_correction() -> None:
    # event at 1 written at 1 (x=1); a correction for the same event written at 8 (x=9);
    # a later-created row for an older event (0, written at 6) must not beat event 1.
    feats = table([(1, 1.0, 1.0, 1.0, 1), (1, 1.0, 8.0, 9.0, 9), (1, 0.0, 6.0, 5.0, 5)])
    ent = entities([(1, 3.0), (1, 7.0), (1, 10.0)])
    view = make_view()
    event_time = assert_matches_oracle(ent, feats, view, as_served=False)
    served = assert_matches_oracle(ent, feats, view, as_served=True)
    assert values(event_time, "x") == [9.0, 9.0, 9.0]
    assert values(served, "x") == [1.0, 1.0, 9.0]


def test_as_served_with_created_before_event() -> None:
    # a row created before its event time (future-dated) is visible only from its event time
    feats = table([(1, 5.0, 1.0, 3.0, 3), (1, 2.0, 2.0, 1.0, 1)])
    got = assert_matches_oracle(entities([(1, 4.0), (1, 5.0)]), feats, make_view(), as_served=True)
    assert values(got, "x") == [1.0, 3.0]


def test_left_join_keeps_order_index_duplicates_and_extra_columns() -> None:
    ent = entities([(2, 5.0), (1, 5.0), (2, 5.0), (7, 5.0), (1, 0.5)])
    ent.index = pd.Index([10, 3, 10, 1, 0])
    feats = table([(1, 1.0, 1.0, 1.0, 1), (2, 1.0, 1.0, 2.0, 2)])
    got = point_in_time_join(ent, [(make_view()[["x", "n"]], feats)])
    assert list(got.index) == [10, 3, 10, 1, 0]
    assert list(got.columns) == ["user_id", "event_timestamp", "label", "x", "n"]
    pd.testing.assert_frame_equal(got[ent.columns], ent)
    assert values(got, "x") == [2.0, 1.0, 2.0, None, None]
    assert values(got, "n") == [2, 1, 2, None, None]
    assert got["n"].dtype == "Int64"


def test_null_feature_value_of_the_winner_stays_null() -> None:
    feats = table([(1, 1.0, 1.0, 1.0, 1), (1, 2.0, 2.0, None, None)])
    got = assert_matches_oracle(entities([(1, 3.0), (1, 1.5)]), feats, make_view(), as_served=False)
    assert values(got, "x") == [None, 1.0]


def test_timezones_are_compared_as_instants() -> None:
    feats = table([(1, 5.0, 5.0, 1.0, 1)])
    ent = entities([(1, 5.0), (1, 4.99)])
    ent["event_timestamp"] = ent["event_timestamp"].dt.tz_convert("America/New_York")
    got = point_in_time_join(ent, [(make_view()[["x"]], feats)])
    assert values(got, "x") == [1.0, None]
    assert str(got["event_timestamp"].dt.tz) == "America/New_York"  # input column untouched


def test_empty_inputs() -> None:
    view = make_view()
    got = point_in_time_join(
        entities([]).astype({"user_id": "int64"}),
        [(view[["x"]], table([]).astype({"user_id": "int64"}))],
    )
    assert len(got) == 0 and "x" in got.columns
    got = point_in_time_join(
        entities([(1, 1.0)]), [(view[["x"]], table([]).astype({"user_id": "int64"}))]
    )
    assert values(got, "x") == [None]


def test_string_and_compound_keys() -> None:
    place = Entity("place", ("country", "city"), ValueType.STRING)
    view = FeatureView("weather", (place,), (Field("temp", ValueType.FLOAT64),), source="w")
    feats = pd.DataFrame(
        {
            "country": ["fr", "fr", "de"],
            "city": ["paris", "lyon", "paris"],
            "event_timestamp": [at(1), at(1), at(1)],
            "temp": [10.0, 12.0, 5.0],
        }
    )
    ent = pd.DataFrame(
        {
            "country": ["de", "fr", "fr", None],
            "city": ["paris", "lyon", "nice", "paris"],
            "event_timestamp": [at(2)] * 4,
        }
    )
    got = point_in_time_join(ent, [(view[["temp"]], feats)])
    assert values(got, "temp") == [5.0, 12.0, None, None]


def test_several_views_and_full_feature_names() -> None:
    a, b = make_view(name="a"), make_view(name="b", ttl=timedelta(hours=1))
    feats = table([(1, 1.0, 1.0, 1.0, 1)])
    ent = entities([(1, 1.5), (1, 3.0)])
    with pytest.raises(PointInTimeJoinError, match="full_feature_names"):
        point_in_time_join(ent, [(a[["x"]], feats), (b[["x"]], feats)])
    got = point_in_time_join(ent, [(a[["x"]], feats), (b[["x"]], feats)], full_feature_names=True)
    assert values(got, "a__x") == [1.0, 1.0]
    assert values(got, "b__x") == [1.0, None]


@pytest.mark.parametrize("as_served", [False, True])
@pytest.mark.parametrize("ttl_hours", [None, 1, 3])
def test_randomized_against_oracle(as_served: bool, ttl_hours: int | None) -> None:
    rng = np.random.default_rng(20240301 + (ttl_hours or 0) + 100 * as_served)
    view = make_view(ttl=None if ttl_hours is None else timedelta(hours=ttl_hours))
    for _ in range(15):
        n, m = int(rng.integers(0, 30)), int(rng.integers(1, 25))
        event = rng.integers(0, 12, n).astype(float)
        created = event + rng.integers(-2, 5, n)  # sometimes before its event
        x = np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 100, n).astype(float))
        feats = table(
            [
                (
                    int(k),
                    float(e),
                    float(c),
                    None if np.isnan(v) else float(v),
                    None if np.isnan(v) else int(v),
                )
                for k, e, c, v in zip(rng.integers(0, 4, n), event, created, x, strict=True)
            ]
        )
        feats = feats.astype({"user_id": "int64"})
        ent = entities(
            [
                (int(k), float(t))
                for k, t in zip(rng.integers(0, 6, m), rng.integers(-1, 14, m), strict=True)
            ]
        )
        assert_matches_oracle(ent, feats, view, as_served=as_served)


# --- bad inputs -----------------------------------------------------------------


def test_missing_timestamp_column_is_named() -> None:
    ent = entities([(1, 1.0)]).rename(columns={"event_timestamp": "ts"})
    with pytest.raises(PointInTimeJoinError, match="'event_timestamp'"):
        point_in_time_join(ent, [(make_view()[["x"]], table([]))])


def test_naive_timestamps_are_refused() -> None:
    ent = entities([(1, 1.0)])
    ent["event_timestamp"] = ent["event_timestamp"].dt.tz_localize(None)
    with pytest.raises(PointInTimeJoinError, match="naive"):
        point_in_time_join(ent, [(make_view()[["x"]], table([]))])


def test_naive_mixed_with_aware_is_refused() -> None:
    ent = entities([(1, 1.0), (1, 2.0)])
    ent["event_timestamp"] = pd.Series(
        [at(1).to_pydatetime(), at(2).tz_localize(None).to_pydatetime()], dtype=object
    )
    with pytest.raises(PointInTimeJoinError, match="event_timestamp") as err:
        point_in_time_join(ent, [(make_view()[["x"]], table([]))])
    assert err.value.details["field"] == "entity_df.event_timestamp"


def test_wrong_key_dtype_is_named() -> None:
    ent = entities([("1", 1.0)])
    with pytest.raises(PointInTimeJoinError, match="user_id"):
        point_in_time_join(ent, [(make_view()[["x"]], table([(1, 0.0, 0.0, 1.0, 1)]))])


def test_missing_join_key_and_feature_column() -> None:
    view = make_view()
    with pytest.raises(PointInTimeJoinError, match="join key 'user_id'"):
        point_in_time_join(entities([(1, 1.0)]).drop(columns="user_id"), [(view[["x"]], table([]))])
    with pytest.raises(PointInTimeJoinError, match=r"\['x'\]"):
        point_in_time_join(entities([(1, 1.0)]), [(view[["x"]], table([]).drop(columns="x"))])


def test_unknown_feature_in_projection() -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        make_view()[["nope"]]


def test_hash_partition_agrees_across_integer_dtypes() -> None:
    keys = pd.DataFrame({"k": pd.array([1, 2, 3, 4, 5, 99], dtype="int64")})
    other = pd.DataFrame({"k": pd.array([1, 2, 3, 4, 5, 99], dtype="Int32")})
    parts = hash_partition(keys, ["k"], 4)
    assert np.array_equal(parts, hash_partition(other, ["k"], 4))
    assert set(parts) <= {0, 1, 2, 3} and len(set(hash_partition(keys, ["k"], 7))) > 1
