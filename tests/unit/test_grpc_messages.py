"""gRPC messages <-> the HTTP API's bodies, and the ingress's gRPC methods around them."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from entai.deployments import grpc_messages as messages
from entai.deployments.edge_middleware import EdgePolicy
from entai.deployments.grpc_errors import ERROR_CODE_KEY
from entai.deployments.grpc_ingress import GrpcInference, peer_host
from entai.deployments.proto import entai_pb2 as pb
from entai.deployments.schemas import (
    ExplainRequest,
    ExplainResponse,
    FeatureContribution,
    OnlineFeaturesRequest,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RowExplanation,
)
from entai.shared.core import AuthenticationError, InvalidInputError, PermissionDeniedError
from entai.shared.governance import Principal


def ints(*values: int) -> pb.EntityColumn:
    return pb.EntityColumn(int64_values=pb.Int64List(values=values))


def strs(*values: str) -> pb.EntityColumn:
    return pb.EntityColumn(string_values=pb.StringList(values=values))


def test_a_predict_request_becomes_the_http_body() -> None:
    request = pb.PredictRequest(
        model="m",
        entities={"user_id": ints(1, 2), "category": strs("books", "7")},
        request_features={"discount": pb.DoubleList(values=[0.5, math.nan])},
    )
    model, body = messages.predict_request(request)
    assert model == "m"
    http = PredictRequest.model_validate_json(
        '{"entities": {"user_id": [1, 2], "category": ["books", "7"]}}'
    )
    assert body.entities == http.entities
    assert body.request_features["discount"] == [0.5, None]  # NaN: a missing value, as null


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.PredictRequest(entities={"user_id": ints(1)}), "model"),
        (pb.PredictRequest(model="m" * 201, entities={"user_id": ints(1)}), "model"),
        (pb.PredictRequest(model="m"), "entities"),
        (pb.PredictRequest(model="m", entities={"user_id": pb.EntityColumn()}), "entities"),
        (
            pb.PredictRequest(model="m", entities={"user_id": ints(1, 2), "category": strs("a")}),
            "same number of values",
        ),
        (
            pb.PredictRequest(
                model="m",
                entities={"user_id": ints(1, 2)},
                request_features={"x": pb.DoubleList(values=[1.0])},
            ),
            "request_features",
        ),
        (pb.PredictRequest(model="m", entities={"user_id": ints(*range(1001))}), "1000"),
    ],
)
def test_a_predict_request_the_http_api_refuses_is_invalid_input(
    request_: pb.PredictRequest, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        messages.predict_request(request_)
    assert field in caught.value.message + str(caught.value.details)


def test_an_online_request_takes_a_feature_service_or_feature_refs() -> None:
    by_service = messages.online_features_request(
        pb.GetOnlineFeaturesRequest(feature_service="svc", entities={"user_id": ints(3)})
    )
    assert by_service == OnlineFeaturesRequest(feature_service="svc", entities={"user_id": [3]})
    by_refs = messages.online_features_request(
        pb.GetOnlineFeaturesRequest(
            features=pb.FeatureList(names=["v:a", "v:b"]),
            entities={"user_id": ints(3)},
            full_feature_names=True,
        )
    )
    assert by_refs.features == ["v:a", "v:b"]
    assert by_refs.full_feature_names is True
    with pytest.raises(InvalidInputError, match="exactly one of feature_service or features"):
        messages.online_features_request(pb.GetOnlineFeaturesRequest(entities={"user_id": ints(3)}))


def test_a_predict_answer_keeps_every_field() -> None:
    answer = PredictResponse(
        model="m", version=2, versions=[2, 3], predictions=[0.25, 0.75], request_id="r1"
    )
    message = messages.predict_response(answer)
    assert (message.model, message.version, message.request_id) == ("m", 2, "r1")
    assert list(message.versions) == [2, 3]
    assert list(message.predictions) == [0.25, 0.75]


def test_an_online_answer_keeps_values_statuses_and_timestamps() -> None:
    seen = datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC)
    payload = {
        "metadata": {"feature_names": ["clicks", "email"]},
        "results": [
            {
                "values": [3, None, 2.5],
                "statuses": ["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
                "event_timestamps": [seen.isoformat(), None, seen.isoformat()],
            },
            {
                "values": ["***", True, seen],
                "statuses": ["PRESENT", "PRESENT", "NULL_VALUE"],
                "event_timestamps": [None, None, None],
            },
        ],
    }
    message = messages.online_features_response(payload)
    assert list(message.metadata.feature_names) == ["clicks", "email"]
    first, second = message.results
    assert [pb.FeatureStatus.Name(s) for s in first.statuses] == payload["results"][0]["statuses"]
    assert [v.WhichOneof("kind") for v in first.values] == ["int64_value", None, "double_value"]
    assert first.event_timestamps[0].ToDatetime(tzinfo=UTC) == seen
    assert first.event_timestamps[1] == Timestamp()  # null: the zero timestamp
    assert second.values[0].string_value == "***"
    assert second.values[1].bool_value is True
    assert second.values[2].timestamp_value.ToDatetime(tzinfo=UTC) == seen


def test_a_value_no_feature_type_holds_is_a_bug_not_bad_input() -> None:
    with pytest.raises(TypeError, match="bytes"):
        messages.feature_value(b"raw")


class Context:
    """Serve's gRPC context, as far as the ingress methods use it."""

    def __init__(self, metadata: list[tuple[str, str]], peer: str = "ipv4:10.1.2.3:5555") -> None:
        self.metadata = metadata
        self.code: Any = None
        self.trailing: list[tuple[str, str]] = []
        self._peer = peer

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def peer(self) -> str:
        return self._peer

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.trailing = metadata


class Gate:
    """An authenticator that admits ``Bearer good`` (and, for the old tests, any token)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.seen: list[tuple[str | None, str | None]] = []

    async def authenticate(self, authorization: str | None, client: str | None) -> Principal:
        self.seen.append((authorization, client))
        if self.strict and authorization != "Bearer good":
            raise AuthenticationError("token is unknown", details={"reason": "unknown"})
        return Principal("app", frozenset({"app"}))


class Routes(GrpcInference):
    """The ingress's HTTP routes, recording what the gRPC methods pass them."""

    def __init__(self, gate: Gate | None = None, max_bytes: int = 1 << 20) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gate = gate or Gate()
        self._edge = EdgePolicy(self.gate, max_bytes)

    async def predict(
        self, body: PredictRequest, model: str, authorization: str | None
    ) -> PredictResponse:
        self.calls.append((body, model, authorization))
        return PredictResponse(
            model=model, version=1, versions=[1], predictions=[0.5], request_id="r"
        )

    async def explain(
        self, body: ExplainRequest, model: str, authorization: str | None
    ) -> ExplainResponse:
        self.calls.append((body, model, authorization))
        return ExplainResponse(model=model, request_id="r", explanations=[_row()])

    async def online_features(
        self, body: OnlineFeaturesRequest, authorization: str | None
    ) -> dict[str, Any]:
        raise PermissionDeniedError("features:read needed")

    async def recommend(
        self, body: RecommendRequest, model: str, authorization: str | None
    ) -> RecommendResponse:
        self.calls.append((body, model, authorization))
        items = [RecommendedItem(item_id=7, score=0.9), RecommendedItem(item_id=3, score=0.2)]
        return RecommendResponse(model=model, version=4, items=items, request_id="r9")


def test_predict_passes_the_authorization_metadata_to_the_http_route() -> None:
    routes = Routes()
    request = pb.PredictRequest(model="m", entities={"user_id": ints(4)})
    context = Context([("application", "entai"), ("authorization", "Bearer t0k")])
    answer = asyncio.run(routes.Predict(request, context))  # type: ignore[arg-type]
    assert list(answer.predictions) == [0.5]
    ((body, model, authorization),) = routes.calls
    assert (body.entities, model, authorization) == ({"user_id": [4]}, "m", "Bearer t0k")
    assert context.code is None


def test_a_refused_call_ends_with_its_status_and_an_empty_answer() -> None:
    routes = Routes()
    request = pb.GetOnlineFeaturesRequest(feature_service="svc", entities={"user_id": ints(4)})
    context = Context([])
    answer = asyncio.run(routes.GetOnlineFeatures(request, context))  # type: ignore[arg-type]
    assert answer == pb.GetOnlineFeaturesResponse()
    assert context.code == grpc.StatusCode.PERMISSION_DENIED
    assert context.trailing == [(ERROR_CODE_KEY, "permission_denied")]
    bad = pb.PredictRequest(model="m")
    asyncio.run(routes.Predict(bad, context))  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert not routes.calls  # refused before the route: nothing scored


def test_a_call_is_authenticated_before_its_message_is_read() -> None:
    gate = Gate(strict=True)
    routes = Routes(gate)
    invalid = pb.PredictRequest(model="")  # INVALID_ARGUMENT, had it been read
    context = Context([("authorization", "Bearer bad")], peer="ipv6:[::1]:4000")
    asyncio.run(routes.Predict(invalid, context))  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    assert context.trailing == [(ERROR_CODE_KEY, "unauthenticated")]
    assert gate.seen == [("Bearer bad", "::1")]
    assert not routes.calls


def test_a_message_over_the_size_limit_is_resource_exhausted() -> None:
    routes = Routes(Gate(strict=True), max_bytes=1024)
    big = pb.PredictRequest(model="m", entities={"user_id": ints(*range(1000))})
    assert big.ByteSize() > 1024
    context = Context([("authorization", "Bearer good")])
    asyncio.run(routes.Predict(big, context))  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert context.trailing == [(ERROR_CODE_KEY, "payload_too_large")]
    assert not routes.calls
    small = pb.PredictRequest(model="m", entities={"user_id": ints(1)})
    context = Context([("authorization", "Bearer good")])
    asyncio.run(routes.Predict(small, context))  # type: ignore[arg-type]
    assert context.code is None and len(routes.calls) == 1


def test_an_infinite_request_feature_is_refused_naming_it() -> None:
    request = pb.PredictRequest(
        model="m",
        entities={"user_id": ints(1)},
        request_features={"discount": pb.DoubleList(values=[math.inf])},
    )
    with pytest.raises(InvalidInputError) as caught:
        messages.predict_request(request)
    (problem,) = caught.value.details["errors"]
    assert problem["field"] == "request_features.discount.0"
    assert "finite" in problem["message"]


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:51234", "127.0.0.1"),
        ("ipv6:[::1]:51234", "::1"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("", None),
    ],
)
def test_the_peer_address_is_the_host_part(peer: str, host: str | None) -> None:
    assert peer_host(peer) == host


def _row() -> RowExplanation:
    return RowExplanation(
        version=3,
        alias="champion",
        method="tree_shap",
        prediction=0.6,
        margin=0.4,
        base_value=-0.1,
        features=[
            FeatureContribution(
                name="views",
                contribution=0.7,
                value=12.0,
                source="user_stats",
                status="PRESENT",
                event_timestamp="2026-12-01T12:00:00+00:00",
            ),
            FeatureContribution(
                name="email_score", contribution=-0.2, value=None, masked=True, source="user_stats"
            ),
            FeatureContribution(name="discount", contribution=0.0, value=0.0, source="request"),
        ],
    )


def test_explain_and_predicts_explain_flag_become_the_http_bodies() -> None:
    request = pb.PredictRequest(model="m", entities={"user_id": ints(1)}, explain=True)
    model, predict = messages.predict_request(request)
    assert (model, predict.explain) == ("m", True)
    model, body = messages.explain_request(request)
    assert isinstance(body, ExplainRequest) and body.entities == {"user_id": [1]}
    with pytest.raises(InvalidInputError):
        messages.explain_request(pb.PredictRequest(model="", entities={"user_id": ints(1)}))


def test_an_explanation_keeps_values_masks_sources_and_timestamps() -> None:
    answer = ExplainResponse(model="m", request_id="r1", explanations=[_row()])
    message = messages.explain_response(answer)
    assert (message.model, message.request_id, message.output) == ("m", "r1", "margin")
    (row,) = message.explanations
    assert (row.version, row.alias, row.method) == (3, "champion", "tree_shap")
    assert (row.prediction, row.margin, row.base_value) == (0.6, 0.4, -0.1)
    views, email, discount = row.features
    assert (views.value, views.status, views.source) == (12.0, "PRESENT", "user_stats")
    assert views.event_timestamp.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert email.masked and not email.HasField("value") and email.contribution == -0.2
    assert not email.HasField("event_timestamp")
    assert discount.HasField("value") and discount.value == 0.0 and discount.status == ""
    plain = messages.predict_response(
        PredictResponse(model="m", version=1, versions=[1], predictions=[0.5], request_id="r")
    )
    assert list(plain.explanations) == []
    explained = messages.predict_response(
        PredictResponse(
            model="m",
            version=1,
            versions=[1],
            predictions=[0.6],
            request_id="r",
            explanations=[_row()],
        )
    )
    assert explained.explanations[0] == row


def test_explain_passes_the_authorization_metadata_to_the_http_route() -> None:
    routes = Routes()
    request = pb.PredictRequest(model="m", entities={"user_id": ints(4)})
    context = Context([("authorization", "Bearer t0k")])
    answer = asyncio.run(routes.Explain(request, context))  # type: ignore[arg-type]
    assert answer.explanations[0].features[0].name == "views"
    ((body, model, authorization),) = routes.calls
    assert (body.entities, model, authorization) == ({"user_id": [4]}, "m", "Bearer t0k")
    assert context.code is None


def test_a_recommend_request_becomes_the_http_body_and_an_unset_k_is_its_default() -> None:
    request = pb.RecommendRequest(
        model="ranker",
        user_id=42,
        exclude=[3, 9],
        context=pb.RecommendContext(recent_views=[5, 1]),
    )
    model, body = messages.recommend_request(request)
    assert model == "ranker"
    assert body == RecommendRequest.model_validate(
        {"user_id": 42, "exclude": [3, 9], "context": {"recent_views": [5, 1]}}
    )
    assert body.k == 10
    request.k = 4
    assert messages.recommend_request(request)[1].k == 4


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.RecommendRequest(user_id=1), "model"),
        (pb.RecommendRequest(model="r", user_id=1, k=0), "k"),
        (pb.RecommendRequest(model="r", user_id=1, k=101), "k"),
        (pb.RecommendRequest(model="r", user_id=1, exclude=[-1]), "exclude.0"),
        (
            pb.RecommendRequest(
                model="r", user_id=1, context=pb.RecommendContext(recent_views=list(range(51)))
            ),
            "context.recent_views",
        ),
    ],
)
def test_a_recommend_request_the_http_api_refuses_is_invalid_input(
    request_: pb.RecommendRequest, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        messages.recommend_request(request_)
    fields = [p["field"] for p in caught.value.details.get("errors", [caught.value.details])]
    assert field in fields


def test_recommend_passes_the_authorization_metadata_and_answers_items_in_order() -> None:
    routes = Routes()
    request = pb.RecommendRequest(model="ranker", user_id=8, k=2)
    context = Context([("authorization", "Bearer t0k")])
    answer = asyncio.run(routes.Recommend(request, context))  # type: ignore[arg-type]
    assert context.code is None
    assert (answer.model, answer.version, answer.request_id) == ("ranker", 4, "r9")
    assert [(i.item_id, i.score) for i in answer.items] == [(7, 0.9), (3, 0.2)]
    ((body, model, authorization),) = routes.calls
    assert (body.user_id, body.k, model, authorization) == (8, 2, "ranker", "Bearer t0k")
    refused = Context([("authorization", "Bearer t0k")])
    asyncio.run(routes.Recommend(pb.RecommendRequest(model="ranker", k=0), refused))  # type: ignore[arg-type]
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(routes.calls) == 1
