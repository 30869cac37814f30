"""On-demand views at serving time: the training set's function, on the online values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from read_services import read_services

from entai.deployments.platform import PlatformServices
from entai.shared.core import DefinitionError, InvalidInputError
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureRow,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    ValueType,
    compute_on_demand,
    entity_key,
)

USER = Entity(name="user", join_keys=("user_id",))
STATS = FeatureView(
    name="user_stats",
    entities=(USER,),
    schema=(
        Field(name="views", dtype=ValueType.FLOAT64),
        Field(name="orders", dtype=ValueType.FLOAT64),
    ),
    source="events",
)


def _conversion(frame: pd.DataFrame) -> pd.DataFrame:
    rate = frame["orders"] / (frame["views"] + 1.0)
    return pd.DataFrame({"conversion": rate, "discounted": rate * (1.0 - frame["discount"])})


CONVERSION = OnDemandFeatureView(
    name="conversion",
    request_schema=(Field(name="discount", dtype=ValueType.FLOAT64),),
    sources=(STATS,),
    schema=(
        Field(name="conversion", dtype=ValueType.FLOAT64),
        Field(name="discounted", dtype=ValueType.FLOAT64),
    ),
    transform=_conversion,
)
SERVICE = FeatureService(name="ranker", features=(STATS, CONVERSION))
SEEN = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def services() -> PlatformServices:
    row = FeatureRow(
        "user_stats", entity_key({"user_id": 1}), {"views": 3.0, "orders": 2.0}, SEEN, SEEN
    )
    definitions = Definitions(
        entities=(USER,), views=(STATS,), on_demand_views=(CONVERSION,), services=(SERVICE,)
    )
    return read_services([row], definitions, SERVICE, None)


def test_served_on_demand_features_equal_the_training_sets(services: PlatformServices) -> None:
    inputs = asyncio.run(services.feature_inputs({"user_id": [1, 2]}, {"discount": [0.5, 0.0]}))
    assert inputs.names == ("views", "orders", "discount", "conversion", "discounted")
    row = dict(zip(inputs.names, inputs.matrix[0], strict=True))
    assert row["conversion"] == pytest.approx(0.5) and row["discounted"] == pytest.approx(0.25)
    # User 2 has no online row: its inputs are missing, and so are the computed ones.
    assert np.isnan(inputs.matrix[1][inputs.names.index("conversion")])
    # The training set computes the same values from the same columns.
    frame = pd.DataFrame({"views": [3.0], "orders": [2.0], "discount": [0.5]})
    trained = compute_on_demand([CONVERSION], frame)
    assert trained["discounted"].tolist() == [row["discounted"]]
    assert services.on_demand_request_columns == frozenset({"discount"})


def test_a_missing_request_column_is_the_callers_error(services: PlatformServices) -> None:
    with pytest.raises(InvalidInputError, match="needs request column 'discount'"):
        asyncio.run(services.feature_inputs({"user_id": [1]}, {}))


def test_full_feature_names_and_a_transform_that_drops_a_field() -> None:
    frame = pd.DataFrame(
        {"user_stats__views": [1.0], "user_stats__orders": [1.0], "discount": [0.0]}
    )
    out = compute_on_demand([CONVERSION], frame, full_feature_names=True)
    assert out["conversion__conversion"].tolist() == [0.5]
    broken = OnDemandFeatureView(
        name="broken",
        request_schema=(),
        sources=(STATS,),
        schema=(Field(name="ratio", dtype=ValueType.FLOAT64),),
        transform=lambda df: df[["views"]],
    )
    with pytest.raises(DefinitionError, match="did not return 'ratio'"):
        compute_on_demand([broken], pd.DataFrame({"views": [1.0], "orders": [1.0]}))
