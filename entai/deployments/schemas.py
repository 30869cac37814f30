"""Pydantic request and response models of the HTTP API (DESIGN §5).

Every request model bounds what it accepts, so a request is refused with 422 naming
the field (before any lookup) rather than costing memory and time: at most
:data:`MAX_ENTITY_ROWS` entity rows and :data:`MAX_JOIN_KEYS` join keys, at most
:data:`MAX_REQUEST_FEATURES` request-time features (finite numbers or null: NaN and
infinities are refused), names up to :data:`MAX_NAME_LENGTH` characters, entity
strings up to :data:`MAX_ENTITY_STRING` and 64-bit entity integers; a recommendation
asks for 1 to :data:`MAX_RECOMMEND_K` items, excludes at most
:data:`MAX_EXCLUDED_ITEMS` and passes at most :data:`MAX_SESSION_VIEWS` session views. The body as a
whole is bounded before it is read (``serve.max_body_bytes``,
:mod:`entai.deployments.edge_middleware`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_ENTITY_ROWS",
    "MAX_ENTITY_STRING",
    "MAX_EVENTS",
    "MAX_EVENT_FIELDS",
    "MAX_EVENT_STRING",
    "MAX_EXCLUDED_ITEMS",
    "MAX_FEATURE_REFS",
    "MAX_JOIN_KEYS",
    "MAX_NAME_LENGTH",
    "MAX_RECOMMEND_K",
    "MAX_REQUEST_FEATURES",
    "MAX_SESSION_VIEWS",
    "EntityValue",
    "ErasureAccepted",
    "ErasureStatus",
    "ErasureStoreReceipt",
    "ExplainRequest",
    "ExplainResponse",
    "FeastFeatureVector",
    "FeastFeatureViewMetadata",
    "FeastMetadata",
    "FeastOnlineFeaturesRequest",
    "FeastOnlineFeaturesResponse",
    "FeatureContribution",
    "FeatureValue",
    "FeedbackRequest",
    "FeedbackResponse",
    "Interaction",
    "ModelDetail",
    "ModelSummary",
    "ModelVersion",
    "OnlineFeaturesRequest",
    "OnlineFeaturesResponse",
    "PredictRequest",
    "PredictResponse",
    "RecommendContext",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "RowExplanation",
]

MAX_ENTITY_ROWS = 1_000
MAX_JOIN_KEYS = 16
MAX_REQUEST_FEATURES = 256
MAX_FEATURE_REFS = 1_000
MAX_NAME_LENGTH = 200
MAX_ENTITY_STRING = 256
MAX_EVENTS = 10_000
MAX_EVENT_FIELDS = 256
MAX_EVENT_STRING = 10_000
MAX_RECOMMEND_K = 100
MAX_EXCLUDED_ITEMS = 1_000
MAX_SESSION_VIEWS = 50
_INT64 = 2**63

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
EntityValue = Annotated[
    Annotated[int, Field(ge=-_INT64, lt=_INT64)]
    | Annotated[str, Field(max_length=MAX_ENTITY_STRING)],
    Field(union_mode="left_to_right"),
]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | None
"""A request-time feature value: a finite number, or null for missing."""
EntityColumns = Annotated[
    dict[Name, Annotated[list[EntityValue], Field(max_length=MAX_ENTITY_ROWS)]],
    Field(max_length=MAX_JOIN_KEYS),
]
EventValue = Annotated[
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True, ge=-_INT64, lt=_INT64)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, Field(strict=True, max_length=MAX_EVENT_STRING)]
    | None,
    Field(union_mode="left_to_right"),
]
"""One field of an event: a JSON scalar kept as sent (the source's contract types it)."""


def _check_entities(entities: dict[str, list[EntityValue]]) -> None:
    if not entities:
        raise ValueError("entities must name at least one join key")
    lengths = {len(v) for v in entities.values()}
    if len(lengths) != 1:
        raise ValueError("every join key in entities must have the same number of values")
    (n,) = lengths
    if n == 0:
        raise ValueError("entities must hold at least one row")


class OnlineFeaturesRequest(BaseModel):
    """Feast's ``/get-online-features`` body: a feature service or feature refs."""

    model_config = ConfigDict(extra="forbid")

    feature_service: Name | None = None
    features: Annotated[list[Name], Field(max_length=MAX_FEATURE_REFS)] | None = None
    entities: EntityColumns
    full_feature_names: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> OnlineFeaturesRequest:
        if (self.feature_service is None) == (self.features is None):
            raise ValueError("give exactly one of feature_service or features")
        if self.features is not None and not self.features:
            raise ValueError("features must not be empty")
        _check_entities(self.entities)
        return self


class FeatureResult(BaseModel):
    """Values of one feature, in entity order."""

    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str | None]


class OnlineFeaturesResponse(BaseModel):
    """Feast's response shape: one result per feature name."""

    metadata: dict[str, list[str]]
    results: list[FeatureResult]


class FeastOnlineFeaturesRequest(OnlineFeaturesRequest):
    """The body Feast's SDK sends to ``/get-online-features`` (Feast 0.67's feature server).

    entai's body plus Feast's ``include_feature_view_version_metadata``: when true, the
    answer's metadata names the feature views read. Any other field is refused.
    """

    include_feature_view_version_metadata: bool = False


class FeastFeatureVector(BaseModel):
    """One column of Feast's answer (a join key or a feature), in entity order."""

    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class FeastFeatureViewMetadata(BaseModel):
    """A feature view read (entai's views have no version number to report)."""

    name: str


class FeastMetadata(BaseModel):
    """Column names (join keys first), and the views read when asked for."""

    feature_names: list[str]
    feature_view_metadata: list[FeastFeatureViewMetadata] | None = None


class FeastOnlineFeaturesResponse(BaseModel):
    """Feast's answer: join-key columns, then one column per feature."""

    metadata: FeastMetadata
    results: list[FeastFeatureVector]


class ExplainRequest(BaseModel):
    """Entities to explain, plus request-time features (the limits of predict)."""

    model_config = ConfigDict(extra="forbid")

    entities: EntityColumns
    request_features: Annotated[
        dict[Name, Annotated[list[FeatureValue], Field(max_length=MAX_ENTITY_ROWS)]],
        Field(max_length=MAX_REQUEST_FEATURES),
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> ExplainRequest:
        _check_entities(self.entities)
        n = len(next(iter(self.entities.values())))
        bad = [k for k, v in self.request_features.items() if len(v) != n]
        if bad:
            raise ValueError(f"request_features {bad} must have one value per entity row")
        return self


class PredictRequest(ExplainRequest):
    """Entities to score, plus request-time features; ``explain`` adds explanations."""

    explain: bool = False


class FeatureContribution(BaseModel):
    """One model input of one row: its contribution and where its value came from.

    ``source`` is the feature view the value was read from (``status`` and
    ``event_timestamp`` are that read's) or ``request`` for a request-time feature.
    ``value`` is null when the value is missing, or withheld (``masked``: a PII feature
    the caller may not read without ``features:read_pii``).
    """

    name: str
    contribution: float
    value: float | None
    masked: bool = False
    source: str
    status: str | None = None
    event_timestamp: str | None = None


class RowExplanation(BaseModel):
    """One entity row's explanation: ``base_value + sum(contributions) == margin``.

    ``method`` names the explainer (``tree_shap``: XGBoost's exact TreeSHAP; ``linear``:
    exact linear attributions; ``sampling_shapley``: permutation-sampling estimate).
    The margin is the model's raw output (log-odds for a logistic model);
    ``prediction`` is what predict answers.
    """

    version: int
    alias: str
    method: str
    prediction: float
    margin: float
    base_value: float
    features: list[FeatureContribution]


class ExplainResponse(BaseModel):
    """Explanations in entity order; contributions sum to each row's ``margin``."""

    model: str
    request_id: str
    output: Literal["margin"] = "margin"
    explanations: list[RowExplanation]


class PredictResponse(BaseModel):
    """Scores in entity order, with the model version that produced them.

    ``version`` is the version that answered the first row; ``versions`` names the
    version of every row (rows of one request may be split by a canary).
    """

    model: str
    version: int
    versions: list[int]
    predictions: list[float]
    request_id: str
    explanations: list[RowExplanation] | None = None


ItemId = Annotated[int, Field(ge=0, lt=_INT64)]


class RecommendContext(BaseModel):
    """What the front end knows about the moment of the request.

    Attributes:
        recent_views: Items the user viewed in this session, newest first (they count
            as the most recent views for co-view candidates and features).
    """

    model_config = ConfigDict(extra="forbid")

    recent_views: list[ItemId] = Field(default_factory=list, max_length=MAX_SESSION_VIEWS)


class RecommendRequest(BaseModel):
    """A user to recommend ``k`` items to (``POST /v1/recommend/{model}``)."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[int, Field(ge=-_INT64, lt=_INT64)]
    k: int = Field(10, ge=1, le=MAX_RECOMMEND_K)
    exclude: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDED_ITEMS)
    context: RecommendContext = Field(default_factory=RecommendContext)


class RecommendedItem(BaseModel):
    """One recommended item with the ranker's score."""

    item_id: int
    score: float


class RecommendResponse(BaseModel):
    """Items best first, the ranker version that chose them, and the request id
    (feedback on an item names it).

    Attributes:
        recent_views_source: Where the user's views before the request's
            ``context.recent_views`` came from: ``store`` (the online store's list, the
            application's ``ranker_recent_views``) or ``index`` (the ranker's
            interaction index: no store read configured, no list stored for the user,
            or a fallback).
        category_activity_source: Where the user's activity per category (their top
            categories and category features) came from: ``store`` (the application's
            ``ranker_category_activity``) or ``index`` (no store read configured, no
            value stored for the user, or a fallback).
        fallback: Set when the online store was to be read and did not answer:
            ``timeout``, ``unavailable``, ``breaker_open`` or ``invalid_value``; the
            items then come from the index (and the context).
    """

    model: str
    version: int
    items: list[RecommendedItem]
    request_id: str
    recent_views_source: Literal["store", "index"] = "index"
    category_activity_source: Literal["store", "index"] = "index"
    fallback: str | None = None


RequestId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Interaction(BaseModel):
    """A click or a purchase of a recommended item, by the recommendation's request id."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId
    item_id: ItemId
    kind: Literal["click", "purchase"]


class FeedbackRequest(BaseModel):
    """Observed outcomes of earlier answers, by the request id they returned.

    ``labels`` are 0/1 outcomes of predictions; ``interactions`` are clicks and
    purchases of recommended items. At least one of the two must be given.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    labels: dict[RequestId, Annotated[int, Field(ge=0, le=1)]] = Field(
        default_factory=dict, max_length=10_000
    )
    interactions: list[Interaction] = Field(default_factory=list, max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> FeedbackRequest:
        if not self.labels and not self.interactions:
            raise ValueError("give labels or interactions")
        return self


class FeedbackResponse(BaseModel):
    """How many labels matched a logged prediction, and how many interactions were logged."""

    model: str
    received: int
    matched: int
    interactions: int = 0


class ModelSummary(BaseModel):
    """One registered model: its aliases and latest version."""

    name: str
    aliases: dict[str, int]
    latest_version: int | None


class ModelVersion(BaseModel):
    """One version of a registered model."""

    version: int
    aliases: list[str]
    run_id: str | None
    metrics: dict[str, float]


class ModelDetail(BaseModel):
    """A registered model's versions and, when deployed here, what each alias serves."""

    name: str
    versions: list[ModelVersion]
    serving: dict[str, int]


class EventsRequest(BaseModel):
    """A batch of events for one source (``POST /v1/events``)."""

    model_config = ConfigDict(extra="forbid")

    source: Name
    events: list[
        Annotated[dict[Name, EventValue], Field(min_length=1, max_length=MAX_EVENT_FIELDS)]
    ] = Field(min_length=1, max_length=MAX_EVENTS)


class EraseRequest(BaseModel):
    """A data subject to erase (``POST /v1/governance/erase``)."""

    model_config = ConfigDict(extra="forbid")

    entity: dict[Name, EntityValue] = Field(min_length=1, max_length=8)
    reason: str = Field("right to erasure", max_length=500)


class ErasureAccepted(BaseModel):
    """An erasure started (``202``); its receipt is at the ``Location`` header,
    ``GET /v1/governance/erasures/{erasure_id}``."""

    erasure_id: str
    status: Literal["running"] = "running"


class ErasureStoreReceipt(BaseModel):
    """What one store did: rows removed, files rewritten or deleted, keys tombstoned."""

    store: str
    status: Literal["erased", "clean", "absent", "failed"]
    rows_removed: int = 0
    files_rewritten: int = 0
    files_deleted: int = 0
    touched: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    note: str = ""
    tombstones: int = 0


class ErasureStatus(BaseModel):
    """The receipt of an erasure: ``running``; ``done`` (every store erased and the
    verification scan clean); ``failed`` (``error``, or traces counted in ``remaining``;
    also a running erasure whose task stopped renewing its lease: it died, ask again).
    The subject is named by its digest only."""

    erasure_id: str
    status: Literal["running", "done", "failed"]
    subject: str
    requested_by: str
    principal: str
    reason: str
    started_at: str
    finished_at: str | None = None
    stores: list[ErasureStoreReceipt] = Field(default_factory=list)
    remaining: dict[str, int] = Field(
        default_factory=dict, description="The verification scan: store -> traces left."
    )
    complete: bool | None = None
    retrain_datasets: dict[str, int] = Field(default_factory=dict)
    retrain_models: list[str] = Field(default_factory=list)
    error: str | None = None
    heartbeat_at: str | None = Field(
        None, description="A running erasure's last heartbeat; past its lease it is failed."
    )
