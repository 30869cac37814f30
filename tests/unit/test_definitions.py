"""Feature definitions: validation, content hash, resolution, module loading, registry."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from entai.shared.core import DefinitionError, NotFoundError
from entai.shared.data import Lake, PiiClass
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    OnDemandFeatureView,
    ValueType,
    compute_view,
)

USER = Entity("user", ("user_id",))


def clicks_per_user(raw: pd.DataFrame) -> pd.DataFrame:
    """The seed-style shared transform: row-wise, so batch == concatenated micro-batches."""
    out = raw[["user_id", "ts"]].rename(columns={"ts": "event_timestamp"})
    out["clicks"] = raw["clicks"].astype("int64")
    out["ctr"] = raw["clicks"] / raw["views"].where(raw["views"] > 0)
    return out


def make_view(**overrides: object) -> FeatureView:
    args: dict[str, object] = {
        "name": "user_stats",
        "entities": (USER,),
        "schema": (
            Field("clicks", ValueType.INT64),
            Field("ctr", ValueType.FLOAT64),
            Field("email", ValueType.STRING, pii=PiiClass.IDENTIFIER),
        ),
        "source": "events",
        "ttl": timedelta(days=1),
        "transform": clicks_per_user,
        "owner": "growth",
        "tags": {"team": "growth"},
    }
    args.update(overrides)
    return FeatureView(**args)  # type: ignore[arg-type]


def test_bad_dtype_and_pii_name_the_field() -> None:
    with pytest.raises(DefinitionError, match=r"'score'.*'float128'"):
        Field("score", "float128")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="'score'"):
        Field("score", ValueType.FLOAT64, pii="secret")  # type: ignore[arg-type]
    assert Field("s", "bool").dtype is ValueType.BOOL  # type: ignore[arg-type]


def test_names_and_keys_are_validated() -> None:
    with pytest.raises(DefinitionError, match="identifier"):
        Entity("bad name", ("k",))
    with pytest.raises(DefinitionError, match="join key"):
        Entity("user", ())
    with pytest.raises(DefinitionError, match="reserved"):
        Field("event_timestamp", ValueType.INT64)


def test_view_validation_names_the_view() -> None:
    with pytest.raises(DefinitionError, match=r"'user_stats'.*duplicate.*'clicks'"):
        make_view(schema=(Field("clicks", ValueType.INT64), Field("clicks", ValueType.FLOAT64)))
    with pytest.raises(DefinitionError, match=r"'user_stats'.*ttl"):
        make_view(ttl=timedelta(0))
    with pytest.raises(DefinitionError, match=r"'user_stats'.*Entity"):
        make_view(entities=("user",))


def test_view_accessors() -> None:
    view = make_view()
    assert view.join_keys == ("user_id",)
    assert view.feature_names == ("clicks", "ctr", "email")
    assert view.field("email").pii is PiiClass.IDENTIFIER
    assert view.pii["clicks"] is PiiClass.NONE
    assert view[["ctr"]] == FeatureViewProjection(view, ("ctr",))
    with pytest.raises(NotFoundError, match=r"'user_stats'.*'nope'"):
        view.field("nope")
    assert hash(view) == hash(make_view())


def test_definitions_reject_unknown_entity_and_duplicates() -> None:
    view = make_view()
    with pytest.raises(DefinitionError, match=r"'user_stats'.*unknown entity 'user'"):
        Definitions(views=[view])
    with pytest.raises(DefinitionError, match=r"duplicate.*'user_stats'"):
        Definitions(entities=[USER], views=[view, make_view()])
    service = FeatureService("ranker", (make_view(name="other"),))
    with pytest.raises(DefinitionError, match=r"'ranker'.*unregistered view 'other'"):
        Definitions(entities=[USER], views=[view], services=[service])


def test_content_hash_is_canonical_and_sensitive() -> None:
    a, b = make_view(), make_view(name="b")
    first = Definitions(entities=[USER], views=[a, b]).content_hash()
    assert first == Definitions(entities=[USER], views=[b, a]).content_hash()
    changed = make_view(schema=(Field("clicks", ValueType.FLOAT64),))
    assert first != Definitions(entities=[USER], views=[changed, b]).content_hash()

    def clicks_per_user(raw: pd.DataFrame) -> pd.DataFrame:  # same name, other code
        return raw

    other_code = make_view(transform=clicks_per_user)
    assert first != Definitions(entities=[USER], views=[other_code, b]).content_hash()


def test_protected_and_segment_marks() -> None:
    view = make_view(
        schema=(
            Field("clicks", ValueType.INT64),
            Field("age_band", ValueType.STRING, protected=True),
            Field("region", ValueType.STRING, segment=True),
        )
    )
    assert view.evaluation_attributes == ("age_band", "region")
    assert make_view().evaluation_attributes == ()


def test_unset_marks_leave_the_content_hash_alone() -> None:
    """Fields that do not use ``protected``/``segment`` hash as before the marks existed."""
    plain = Definitions(entities=[USER], views=[make_view()])
    assert '"protected"' not in plain.canonical_json()
    assert '"segment"' not in plain.canonical_json()
    marked = make_view(
        schema=(
            *make_view().schema[:2],
            Field("email", ValueType.STRING, pii=PiiClass.IDENTIFIER, protected=True),
        )
    )
    with_mark = Definitions(entities=[USER], views=[marked])
    assert '"protected":true' in with_mark.canonical_json()
    assert with_mark.content_hash() != plain.content_hash()


def _defs() -> Definitions:
    view = make_view()
    ratio = OnDemandFeatureView(
        "ctr_boost",
        request_schema=(Field("boost", ValueType.FLOAT64),),
        sources=(view[["ctr"]],),
        schema=(Field("boosted_ctr", ValueType.FLOAT64),),
        transform=lambda df: pd.DataFrame({"boosted_ctr": df["ctr"] * df["boost"]}),
    )
    service = FeatureService("ranker", (view[["clicks"]], ratio))
    return Definitions(entities=[USER], views=[view], on_demand_views=[ratio], services=[service])


def test_resolve_service_refs_and_on_demand_sources() -> None:
    defs = _defs()
    view = defs.view("user_stats")
    assert defs.resolve("ranker") == [FeatureViewProjection(view, ("clicks", "ctr"))]
    assert defs.resolve(defs.service("ranker")) == defs.resolve("ranker")
    assert [o.name for o in defs.on_demand("ranker")] == ["ctr_boost"]
    assert defs.resolve(["user_stats:ctr", "user_stats:clicks", "user_stats:ctr"]) == [
        FeatureViewProjection(view, ("ctr", "clicks"))
    ]
    with pytest.raises(NotFoundError, match="'nope'"):
        defs.resolve(["user_stats:nope"])
    with pytest.raises(NotFoundError, match="'missing'"):
        defs.resolve(["missing:ctr"])
    with pytest.raises(NotFoundError, match="'nobody'"):
        defs.resolve("nobody")
    with pytest.raises(DefinitionError, match="view:feature"):
        defs.resolve(["user_stats"])


def test_from_module_collects_definitions(tmp_path: Path) -> None:
    module = tmp_path / "features_repo.py"
    module.write_text(
        textwrap.dedent(
            """
            from entai.shared.features import Entity, FeatureService, FeatureView, Field

            item = Entity("item", ("item_id",))
            prices = FeatureView("prices", (item,), (Field("price", "float64"),), source="p")
            shop = FeatureService("shop", (prices,))
            """
        )
    )
    defs = Definitions.from_module(str(module))
    assert list(defs.entities) == ["item"]
    assert list(defs.views) == ["prices"]
    assert defs.service("shop").features[0] is defs.view("prices")
    with pytest.raises(NotFoundError, match="no_such_module"):
        Definitions.from_module("no_such_module_xyz")


def test_publish_versions_the_registry_in_the_lake(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(NotFoundError, match="current"):
        Definitions.load_record(lake)
    defs = _defs()
    digest = defs.publish(lake)
    assert digest == defs.content_hash()
    record = Definitions.load_record(lake)
    assert record == defs.to_record()
    assert record["views"][0]["transform"]["qualname"].endswith("clicks_per_user")
    other = Definitions(entities=[USER], views=[make_view(ttl=None)])
    assert other.publish(lake) != digest
    assert Definitions.load_record(lake)["views"][0]["ttl"] is None
    assert Definitions.load_record(lake, digest) == record  # old versions stay readable


def test_one_transform_serves_batch_and_streaming() -> None:
    view = make_view(schema=(Field("clicks", ValueType.INT64), Field("ctr", ValueType.FLOAT64)))
    raw = pd.DataFrame(
        {
            "user_id": [1, 2, 1, 3],
            "ts": pd.to_datetime(["2024-01-01T00:00Z", "2024-01-01T01:00Z"] * 2, utc=True),
            "clicks": [1, 0, 5, 2],
            "views": [2, 0, 10, 4],
        }
    )
    batch = compute_view(view, raw)
    micro = pd.concat([compute_view(view, raw.iloc[i : i + 1]) for i in range(len(raw))])
    pd.testing.assert_frame_equal(batch, micro)
    assert list(batch.columns) == ["user_id", "event_timestamp", "clicks", "ctr"]
    assert batch["clicks"].dtype == "Int64" and str(batch["event_timestamp"].dt.tz) == "UTC"
    assert pd.isna(batch["ctr"].iloc[1])


def test_transform_output_missing_timestamp_names_the_view() -> None:
    view = make_view(transform=lambda raw: raw.drop(columns=["ts"]))
    raw = pd.DataFrame({"user_id": [1], "ts": [pd.Timestamp.now(tz="UTC")], "clicks": [1]})
    with pytest.raises(DefinitionError, match=r"'user_stats'.*event_timestamp"):
        compute_view(view, raw)
