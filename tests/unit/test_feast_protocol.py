"""Feast's feature-server protocol: the body it sends, the answer its SDK parses.

The read behind both feature routes runs here in-process (a memory online store, an
auth double that masks one PII feature); entai's own answer and Feast's are shaped
from that one read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from read_services import read_services

from entai.deployments.feast_protocol import (
    FEAST_ZERO_TIME,
    feast_response,
    feast_time,
    feast_value,
)
from entai.deployments.http_errors import install_error_handlers
from entai.deployments.platform import PlatformServices
from entai.deployments.schemas import (
    FeastOnlineFeaturesRequest,
    FeastOnlineFeaturesResponse,
    OnlineFeaturesRequest,
)
from entai.shared.core import InvalidInputError
from entai.shared.data import PiiClass
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureRow,
    FeatureService,
    FeatureView,
    Field,
    ValueType,
    entity_key,
)
from entai.shared.governance import Decision

USER = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
CATEGORY = Entity(name="category", join_keys=("category",), value_type=ValueType.STRING)
USER_STATS = FeatureView(
    name="user_stats",
    entities=(USER,),
    schema=(
        Field(name="orders", dtype=ValueType.FLOAT64),
        Field(name="email_domain", dtype=ValueType.STRING, pii=PiiClass.QUASI_IDENTIFIER),
    ),
    source="events",
    ttl=None,
)
USER_CATEGORY = FeatureView(
    name="user_category",
    entities=(USER, CATEGORY),
    schema=(Field(name="views", dtype=ValueType.FLOAT64),),
    source="events",
    ttl=None,
)
# A second view with a feature named like one of user_stats': only full names tell them apart.
TWIN = FeatureView(
    name="twin",
    entities=(USER,),
    schema=(Field(name="orders", dtype=ValueType.FLOAT64),),
    source="events",
    ttl=None,
)
SERVICE = FeatureService(name="propensity", features=(USER_CATEGORY, USER_STATS))
SEEN = datetime(2026, 3, 1, 12, 30, 5, 250_000, tzinfo=UTC)


class _Auth:
    """Allows every read; masks ``user_stats:email_domain`` (no ``features:read_pii``)."""

    def authorize_features(
        self, token: str, features: dict[str, Any], resource: str = "*"
    ) -> Decision:
        masked = tuple(ref for ref, pii in features.items() if pii != PiiClass.NONE)
        return Decision(True, "analyst", "features:read", resource, "test", masked)


@pytest.fixture
def services() -> PlatformServices:
    rows = [
        FeatureRow(
            "user_stats",
            entity_key({"user_id": 1}),
            {"orders": 3.0, "email_domain": "example.com"},
            SEEN,
            SEEN,
        ),
        FeatureRow(
            "user_category",
            entity_key({"user_id": 1, "category": "books"}),
            {"views": 7.0},
            SEEN - timedelta(hours=1),
            SEEN,
        ),
        FeatureRow("twin", entity_key({"user_id": 1}), {"orders": 4.0}, SEEN, SEEN),
    ]
    definitions = Definitions(
        entities=(USER, CATEGORY), views=(USER_STATS, USER_CATEGORY, TWIN), services=(SERVICE,)
    )
    return read_services(rows, definitions, SERVICE, _Auth())


# category comes first in the request; user 2 has no rows.
ENTITIES = {"category": ["books", "games"], "user_id": [1, 2]}


def _feast(services: PlatformServices, **body: Any) -> dict[str, Any]:
    request = FeastOnlineFeaturesRequest(entities=ENTITIES, **body)
    answer = feast_response(services.read_online("token", request), request)
    # What the route serializes: the answer must fit the declared response model.
    return FeastOnlineFeaturesResponse.model_validate(answer).model_dump(exclude_none=True)


def test_feast_answer_puts_join_keys_first_with_their_values(services: PlatformServices) -> None:
    answer = _feast(services, feature_service="propensity")
    names = answer["metadata"]["feature_names"]
    assert names == ["category", "user_id", "views", "orders", "email_domain"]
    assert "feature_view_metadata" not in answer["metadata"]
    columns = dict(zip(names, answer["results"], strict=True))
    assert columns["category"] == {
        "values": ["books", "games"],
        "statuses": ["PRESENT", "PRESENT"],
        "event_timestamps": [FEAST_ZERO_TIME, FEAST_ZERO_TIME],
    }
    assert columns["user_id"]["values"] == [1, 2]
    assert columns["views"] == {
        "values": [7.0, None],
        "statuses": ["PRESENT", "NOT_FOUND"],
        "event_timestamps": ["2026-03-01T11:30:05.250Z", FEAST_ZERO_TIME],
    }
    assert columns["orders"]["values"] == [3.0, None]
    # Masked for a principal without read_pii, exactly as entai's own answer masks it.
    assert columns["email_domain"]["values"] == ["***", None]


def test_full_feature_names_are_feasts_double_underscore(services: PlatformServices) -> None:
    refs = ["user_stats:orders", "twin:orders"]
    answer = _feast(services, features=refs, full_feature_names=True)
    assert answer["metadata"]["feature_names"] == ["user_id", "user_stats__orders", "twin__orders"]
    assert [r["values"] for r in answer["results"]] == [[1, 2], [3.0, None], [4.0, None]]
    # entai's own answer keeps its names (DESIGN §5) and no join-key columns.
    own = services.online_features(
        "token", OnlineFeaturesRequest(entities=ENTITIES, features=refs, full_feature_names=True)
    )
    assert own["metadata"]["feature_names"] == refs
    assert own["results"][0] == {
        "values": [3.0, None],
        "statuses": ["PRESENT", "NOT_FOUND"],
        "event_timestamps": [SEEN.isoformat(), None],
    }


def test_short_names_that_collide_are_refused_naming_the_field(services: PlatformServices) -> None:
    with pytest.raises(InvalidInputError, match="orders") as raised:
        _feast(services, features=["user_stats:orders", "twin:orders"])
    assert raised.value.details["field"] == "full_feature_names"


def test_version_metadata_names_the_views_read(services: PlatformServices) -> None:
    answer = _feast(
        services, feature_service="propensity", include_feature_view_version_metadata=True
    )
    assert answer["metadata"]["feature_view_metadata"] == [
        {"name": "user_category"},
        {"name": "user_stats"},
    ]


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (None, "1970-01-01T00:00:00Z"),
        (datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC), "2026-03-01T12:00:00Z"),
        (datetime(2026, 3, 1, 12, 0, 0, 120_000, tzinfo=UTC), "2026-03-01T12:00:00.120Z"),
        (datetime(2026, 3, 1, 12, 0, 0, 120_001, tzinfo=UTC), "2026-03-01T12:00:00.120001Z"),
        (
            datetime(2026, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
            "2026-03-01T12:00:00Z",
        ),
    ],
)
def test_timestamps_are_written_as_feast_writes_them(ts: datetime | None, text: str) -> None:
    assert feast_time(ts) == text


def test_non_finite_floats_are_their_protobuf_json_names() -> None:
    assert [feast_value(v) for v in (float("nan"), float("inf"), -float("inf"), 1.5, "a")] == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
        "a",
    ]


def test_feasts_body_is_accepted_and_unknown_fields_are_refused_by_name() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/get-online-features")
    def feast(body: FeastOnlineFeaturesRequest) -> dict[str, bool]:
        return {"flag": body.include_feature_view_version_metadata}

    client = TestClient(app)
    # The body Feast 0.67's remote online store sends.
    sent = {
        "entities": {"user_id": [1]},
        "full_feature_names": True,
        "include_feature_view_version_metadata": True,
        "feature_service": "propensity",
    }
    assert client.post("/get-online-features", json=sent).json() == {"flag": True}
    refused = client.post("/get-online-features", json={**sent, "top_k": 3})
    assert refused.status_code == 422
    fields = [e["field"] for e in refused.json()["error"]["details"]["errors"]]
    assert fields == ["body.top_k"]
    # entai's own route keeps its own body: Feast's extra flag is not part of it.
    with pytest.raises(ValidationError, match="include_feature_view_version_metadata"):
        OnlineFeaturesRequest.model_validate(sent)
