"""Conversion between the gRPC messages of ``entai.proto`` and the HTTP API's models.

A gRPC request becomes the very pydantic body the HTTP route validates
(:mod:`entai.deployments.schemas`), so both transports accept and refuse the same
input with the same messages; an answer of the HTTP route becomes the gRPC response.
Validation failures are :class:`~entai.shared.core._errors.InvalidInputError` naming the
fields, as the HTTP API's 422 does. A ``DoubleList`` cannot hold a null, so a NaN
request feature is a missing value (null over HTTP); infinities are refused as there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ValidationError

from entai.deployments.proto import entai_pb2 as pb
from entai.deployments.schemas import (
    ExplainRequest,
    ExplainResponse,
    OnlineFeaturesRequest,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    RowExplanation,
)
from entai.shared.core import InvalidInputError

__all__ = [
    "explain_request",
    "explain_response",
    "feature_value",
    "online_features_request",
    "online_features_response",
    "predict_request",
    "predict_response",
    "recommend_request",
    "recommend_response",
]

_MAX_MODEL_NAME = 200  # as the HTTP path parameter
_SCALAR_FIELDS: tuple[tuple[type, str], ...] = (
    (bool, "bool_value"),
    (int, "int64_value"),
    (float, "double_value"),
    (str, "string_value"),
)
_Body = TypeVar("_Body", bound=BaseModel)


def _entities(columns: Mapping[str, pb.EntityColumn]) -> dict[str, list[Any]]:
    """Join key -> values; a column with no values set is empty (refused as such)."""
    out: dict[str, list[Any]] = {}
    for key, column in columns.items():
        kind = column.WhichOneof("values")
        out[key] = [] if kind is None else list(getattr(column, kind).values)
    return out


def _validated(model: type[_Body], data: dict[str, Any]) -> _Body:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field'] or 'request'}: {p['message']}" for p in problems)
        raise InvalidInputError(
            f"request is invalid: {summary}", details={"errors": problems}
        ) from None


def predict_request(request: pb.PredictRequest) -> tuple[str, PredictRequest]:
    """The model name and the HTTP body of a gRPC ``Predict`` request.

    Raises:
        InvalidInputError: no model name, or the body the HTTP API would refuse.
    """
    _check_model(request.model)
    data = _scoring_body(request)
    data["explain"] = request.explain
    return request.model, _validated(PredictRequest, data)


def explain_request(request: pb.PredictRequest) -> tuple[str, ExplainRequest]:
    """The model name and the HTTP body of a gRPC ``Explain`` request (``explain`` ignored).

    Raises:
        InvalidInputError: no model name, or the body the HTTP API would refuse.
    """
    _check_model(request.model)
    return request.model, _validated(ExplainRequest, _scoring_body(request))


def recommend_request(request: pb.RecommendRequest) -> tuple[str, RecommendRequest]:
    """The ranker's name and the HTTP body of a gRPC ``Recommend`` request (``k`` unset:
    the HTTP default).

    Raises:
        InvalidInputError: no ranker name, or the body the HTTP API would refuse.
    """
    _check_model(request.model)
    data: dict[str, Any] = {
        "user_id": request.user_id,
        "exclude": list(request.exclude),
        "context": {"recent_views": list(request.context.recent_views)},
    }
    if request.HasField("k"):
        data["k"] = request.k
    return request.model, _validated(RecommendRequest, data)


def recommend_response(response: RecommendResponse) -> pb.RecommendResponse:
    """The gRPC form of the HTTP recommend route's answer."""
    return pb.RecommendResponse(
        model=response.model,
        version=response.version,
        items=[pb.RecommendedItem(item_id=i.item_id, score=i.score) for i in response.items],
        request_id=response.request_id,
        recent_views_source=response.recent_views_source,
        category_activity_source=response.category_activity_source,
        fallback=response.fallback,
    )


def _check_model(model: str) -> None:
    if not model or len(model) > _MAX_MODEL_NAME:
        raise InvalidInputError(
            f"model must name the deployed model (1-{_MAX_MODEL_NAME} characters)",
            details={"field": "model"},
        )


def _scoring_body(request: pb.PredictRequest) -> dict[str, Any]:
    return {
        "entities": _entities(request.entities),
        "request_features": {
            name: [None if math.isnan(v) else v for v in column.values]
            for name, column in request.request_features.items()
        },
    }


def _row_explanation(row: RowExplanation) -> pb.RowExplanation:
    return pb.RowExplanation(
        version=row.version,
        alias=row.alias,
        method=row.method,
        prediction=row.prediction,
        margin=row.margin,
        base_value=row.base_value,
        features=[
            pb.FeatureContribution(
                name=f.name,
                contribution=f.contribution,
                value=f.value,
                masked=f.masked,
                source=f.source,
                status=f.status or "",
                event_timestamp=None
                if f.event_timestamp is None
                else _timestamp(datetime.fromisoformat(f.event_timestamp)),
            )
            for f in row.features
        ],
    )


def predict_response(response: PredictResponse) -> pb.PredictResponse:
    """The gRPC form of the HTTP route's answer."""
    return pb.PredictResponse(
        model=response.model,
        version=response.version,
        versions=response.versions,
        predictions=response.predictions,
        request_id=response.request_id,
        explanations=[_row_explanation(r) for r in response.explanations or ()],
    )


def explain_response(response: ExplainResponse) -> pb.ExplainResponse:
    """The gRPC form of the HTTP explain route's answer."""
    return pb.ExplainResponse(
        model=response.model,
        request_id=response.request_id,
        output=response.output,
        explanations=[_row_explanation(r) for r in response.explanations],
    )


def online_features_request(request: pb.GetOnlineFeaturesRequest) -> OnlineFeaturesRequest:
    """The HTTP body of a gRPC ``GetOnlineFeatures`` request.

    Raises:
        InvalidInputError: the body the HTTP API would refuse (e.g. no feature source).
    """
    data: dict[str, Any] = {
        "entities": _entities(request.entities),
        "full_feature_names": request.full_feature_names,
    }
    source = request.WhichOneof("source")
    if source == "feature_service":
        data["feature_service"] = request.feature_service
    elif source == "features":
        data["features"] = list(request.features.names)
    return _validated(OnlineFeaturesRequest, data)


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def feature_value(value: Any, *, empty_list: str = "string_list_value") -> pb.FeatureValue:
    """One online value as a ``FeatureValue`` (none of its fields set for null).

    A list is an ``int64_list_value`` or a ``string_list_value`` by its elements; an
    empty list has no elements to tell, so it sets the field ``empty_list`` names (an
    empty message either way: the declared type's field reads as the empty list).

    Raises:
        TypeError: a value of a type no feature has (a bug upstream, not bad input).
    """
    if value is None:
        return pb.FeatureValue()
    if isinstance(value, list):
        return _list_value(value, empty_list)
    if isinstance(value, datetime):
        return pb.FeatureValue(timestamp_value=_timestamp(value))
    for kind, field in _SCALAR_FIELDS:  # bool before int: a bool is an int
        if isinstance(value, kind):
            out = pb.FeatureValue()
            setattr(out, field, value)
            return out
    raise TypeError(f"no FeatureValue field holds a {type(value).__name__}")


def _list_value(value: list[Any], empty_list: str) -> pb.FeatureValue:
    if all(isinstance(v, str) for v in value) and value:
        return pb.FeatureValue(string_list_value=pb.StringList(values=value))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) and value:
        return pb.FeatureValue(int64_list_value=pb.Int64List(values=value))
    if not value:
        out = pb.FeatureValue()
        getattr(out, empty_list).SetInParent()  # set, and empty
        return out
    kinds = sorted({type(v).__name__ for v in value})
    raise TypeError(f"no FeatureValue list field holds elements of types {kinds}")


def _empty_list_field(values: Sequence[Any]) -> str:
    """The list field of a feature's empty lists: that of its non-empty ones, if any."""
    for value in values:
        if isinstance(value, list) and value:
            return "string_list_value" if isinstance(value[0], str) else "int64_list_value"
    return "string_list_value"


def online_features_response(payload: Mapping[str, Any]) -> pb.GetOnlineFeaturesResponse:
    """The gRPC form of the HTTP route's Feast-shaped answer.

    Statuses keep their names; ISO event timestamps become ``Timestamp``s, and a null
    one the zero ``Timestamp``. A list feature's empty lists set the list field its
    other values set (``string_list_value`` when all are empty or null).
    """
    return pb.GetOnlineFeaturesResponse(
        metadata=pb.OnlineFeaturesMetadata(feature_names=payload["metadata"]["feature_names"]),
        results=[
            pb.FeatureResult(
                values=[
                    feature_value(v, empty_list=_empty_list_field(result["values"]))
                    for v in result["values"]
                ],
                statuses=[pb.FeatureStatus.Value(s) for s in result["statuses"]],
                event_timestamps=[
                    Timestamp() if ts is None else _timestamp(datetime.fromisoformat(ts))
                    for ts in result["event_timestamps"]
                ],
            )
            for result in payload["results"]
        ],
    )
