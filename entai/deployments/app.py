"""The entai Serve application: Ingress (FastAPI + feature lookup + scoring) -> response.

The feature lookup runs inside the ingress replica (a direct Redis read, or one
fan-out to the shard actors), not as a separate deployment: a separate deployment
would cost another handle hop on every prediction. By default the ingress also scores,
with a model runtime of its own that keeps the versions behind ``champion``,
``challenger`` and ``shadow`` loaded and hot-swaps them when the registry moves an
alias (:mod:`entai.deployments.model_runtime`, :mod:`entai.deployments.scoring`):
measured 1.1-1.8x the requests/s of calling a separate deployment
(``docs/benchmarks.md``). With ``score_in_ingress=False`` the graph is
Ingress -> Model instead, for models that need replicas of their own (large models,
accelerators, ``@serve.batch``). Canary rows are chosen by
:mod:`entai.deployments.routing`; served rows go to the prediction log and the
DriftMonitor through :mod:`entai.deployments.tap`, off the request path.
``/v1/explain`` (and ``"explain": true`` on predict) splits each row's margin into
feature contributions (:mod:`entai.deployments.explanations`). The Ingress
also answers gRPC (``entai.proto``) behind Serve's gRPC proxy
(:mod:`entai.deployments.grpc_ingress`), through the same routes. Every request is
authenticated and its body bounded before the body is read
(:mod:`entai.deployments.edge_middleware`, :mod:`entai.deployments.auth_gate`); the
routes then authorize.
"""

# No `from __future__ import annotations` here: Serve's class-based FastAPI views read
# the route signatures at runtime, and string annotations would turn the pydantic
# request bodies into query parameters.

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from fastapi import FastAPI, Header, Path, Response
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve import Deployment
from ray.serve.handle import DeploymentHandle

from entai.actors.core import Metrics, configure_tracing, span, trace_carrier
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import DriftMonitor
from entai.actors.services import Services
from entai.deployments.access_log import (
    FailureLogMiddleware,
    install_failure_log,
    logs_failures,
    serve_logging_config,
)
from entai.deployments.app_args import (
    AppArgs,
    serve_credential,
    settings_of,
    start_ranker,
    start_runtime,
)
from entai.deployments.auth_gate import AuthGate, bearer_token
from entai.deployments.edge_middleware import EdgeMiddleware, EdgePolicy, install_edge
from entai.deployments.explanations import Explanations
from entai.deployments.feast_protocol import feast_response
from entai.deployments.feedback_log import FeedbackLog, ranking_report
from entai.deployments.grpc_ingress import GrpcInference
from entai.deployments.http_errors import install_error_handlers
from entai.deployments.model_deployment import Model
from entai.deployments.operations import EventIntake, erase_subject, erasure_receipt
from entai.deployments.platform import PlatformServices
from entai.deployments.predict_route import MODEL_MAX_LENGTH, PredictRoute, install_predict
from entai.deployments.recommend import RankerRuntime
from entai.deployments.request_ids import RequestIdMiddleware
from entai.deployments.routing import route_aliases
from entai.deployments.schemas import (
    EraseRequest,
    ErasureAccepted,
    ErasureStatus,
    EventsRequest,
    ExplainRequest,
    ExplainResponse,
    FeastOnlineFeaturesRequest,
    FeastOnlineFeaturesResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    PredictRequest,
    PredictResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
)
from entai.deployments.scoring import HandleScorer, LocalScorer, Scored
from entai.deployments.stored_user import StoredUserReader, recommend_with_stored_user
from entai.deployments.tap import DriftMonitorSender, PredictionTap, ServedBatch
from entai.deployments.trace_middleware import TracingMiddleware
from entai.shared.core import (
    EntaiError,
    NotFoundError,
    ServiceUnavailableError,
    new_request_id,
    request_id,
)
from entai.shared.data import EventsReceipt, Lake
from entai.shared.features import entity_key
from entai.shared.recommend import RANKING_FEATURES

__all__ = ["AppArgs", "Ingress", "Model", "build_app"]

log = logging.getLogger(__name__)


_bearer = bearer_token


async def _actor_call(ref: Any) -> Any:
    """Await an actor call; an entai error raised there is re-raised here unwrapped."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, EntaiError):
            raise exc.cause from None
        raise
    except RayActorError as exc:
        raise ServiceUnavailableError(
            "a platform service is restarting; retry", details={"error": type(exc).__name__}
        ) from exc


api = FastAPI(title="entai", version="0.1.0", docs_url="/docs")
install_error_handlers(api)
api.add_middleware(EdgeMiddleware)
api.add_middleware(TracingMiddleware)  # the server span: around the edge, inside the id
api.add_middleware(FailureLogMiddleware)  # around the refusals, inside the id
api.add_middleware(RequestIdMiddleware)  # added last: outermost, so refusals carry the id
# First in the router: predict below FastAPI's routing; what it does not take goes on to
# FastAPI's route (Ingress.predict), which the OpenAPI document describes.
api.router.routes.insert(0, PredictRoute())

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text}
    for status, text in (
        (401, "missing or bad token"),
        (403, "not allowed"),
        (404, "unknown model or object"),
        (413, "body over serve.max_body_bytes"),
        (422, "invalid body"),
        (429, "overloaded, or too many failed authentications"),
        (502, "the model answered a score that is not finite"),
        (503, "unavailable or timed out"),
    )
}


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=128,
    max_queued_requests=512,
    health_check_period_s=5,
    graceful_shutdown_timeout_s=10,
)
@serve.ingress(api)
class Ingress(GrpcInference):
    """HTTP (and gRPC) translation: auth, feature lookup, model call, tap, response."""

    def __init__(self, model: DeploymentHandle[Any] | None, args: AppArgs) -> None:
        settings = settings_of(args)
        configure_tracing(settings.observability, "ingress")
        platform = Services.of(settings)
        credential = serve_credential(settings)
        self._args = args
        self._scorer: HandleScorer | LocalScorer
        if model is None:
            self._scorer = LocalScorer(start_runtime(args, settings, credential))
        else:
            self._scorer = HandleScorer(model, settings.serve.request_timeout_s)
        self._services = PlatformServices.connect(settings, args, platform, credential)
        self._explanations = Explanations(self._services, self._scorer)
        self._gate = AuthGate(
            self._services.auth,
            settings.security.auth_guard,
            breaker=self._services.breakers.governance,
        )
        self._gate.start()
        self._edge = EdgePolicy(self._gate, settings.serve.max_body_bytes)
        install_edge(api, self._edge)
        install_failure_log(api, settings.serve)
        self._log_failures = logs_failures(settings.serve)
        self._settings = settings
        self._intake = EventIntake(settings, args.event_contracts)
        self._platform = platform
        self._registry = platform.registry()
        self._tap = PredictionTap(
            Lake(settings.lake.root),
            DriftMonitorSender(platform, self._services.credential),
            prediction_column=args.prediction_column,
            flush_interval_s=args.tap_flush_interval_s,
        )
        self._tap.start()
        self._stored_user: StoredUserReader | None = None
        if args.ranker_model is not None:
            self._stored_user = StoredUserReader.of(
                self._services.definitions,
                self._services.features,
                self._services.breakers.online_store,
                model=args.ranker_model,
                recent_views=args.ranker_recent_views,
                category_activity=args.ranker_category_activity,
            )
        self._ranker: RankerRuntime | None = None
        if args.ranker_model is not None:
            self._ranker = start_ranker(args.ranker_model, settings, credential)
        # impressions go to the prediction log only: the drift monitor watches the
        # propensity model's feature distributions, not the ranker's lists
        self._impressions = PredictionTap(
            Lake(settings.lake.root),
            None,
            prediction_column="score",
            flush_interval_s=args.tap_flush_interval_s,
        )
        self._impressions.start()
        self._feedback_log = FeedbackLog(Lake(settings.lake.root))
        self._background: set[asyncio.Task[None]] = set()
        install_predict(api, self._predict)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        """Liveness of the ingress replica (no token needed)."""
        return {"status": "ok"}

    @api.post("/v1/predict/{model}", response_model=PredictResponse, responses=_ERRORS)
    async def predict(
        self,
        body: PredictRequest,
        model: str = Path(max_length=MODEL_MAX_LENGTH),
        authorization: str | None = Header(None),
    ) -> PredictResponse:
        """Score entities: canary rows by ``challenger``, the rest by ``champion``.

        With ``"explain": true`` the answer also carries each row's explanation
        (as ``/v1/explain``).
        """
        return await self._predict(body, model, authorization)

    async def _predict(
        self, body: PredictRequest, model: str, authorization: str | None
    ) -> PredictResponse:
        """The predict route's work, whichever route took the request
        (:mod:`entai.deployments.predict_route`)."""
        started = time.perf_counter()
        rid = request_id() or new_request_id()
        token = await self._allow_model(authorization, model)
        inputs = await self._services.feature_inputs(body.entities, body.request_features)
        aliases = route_aliases(inputs.entity_keys, self._args.canary_percent)
        request_names = self._services.model_request_names(body.request_features)
        explained = None
        if body.explain:
            explained = await self._explanations.explain(
                token, model, inputs, aliases, request_names
            )
            scored = [(e.prediction, e.version, e.alias) for e in explained]
        else:
            with span("entai.score", {"entai.model": model, "entai.rows": len(aliases)}):
                scored = await self._scorer.score(
                    inputs.names, inputs.matrix, aliases, request_names
                )
        predictions = [s for s, _, _ in scored]
        versions = [v for _, v, _ in scored]
        self._tap.submit(
            ServedBatch(
                request_id=rid,
                model=model,
                aliases=[a for _, _, a in scored],
                versions=versions,
                entity_keys=inputs.entity_keys,
                feature_names=inputs.names,
                features=inputs.matrix,
                predictions=predictions,
                trace=trace_carrier(),
            )
        )
        if self._args.shadow:
            task = asyncio.create_task(self._shadow(rid, model, inputs, request_names))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        Metrics.prediction_latency(model, versions[0], time.perf_counter() - started)
        return PredictResponse(
            model=model,
            version=versions[0],
            versions=versions,
            predictions=predictions,
            request_id=rid,
            explanations=explained,
        )

    @api.post("/v1/explain/{model}", response_model=ExplainResponse, responses=_ERRORS)
    async def explain(
        self,
        body: ExplainRequest,
        model: str = Path(max_length=200),
        authorization: str | None = Header(None),
    ) -> ExplainResponse:
        """Each row's feature contributions to the model's margin, and the base value.

        Needs ``predict`` on the model; values of PII features are withheld without
        ``features:read_pii``. Explanations are not logged as served predictions.
        """
        rid = request_id() or new_request_id()
        token = await self._allow_model(authorization, model)
        inputs = await self._services.feature_inputs(body.entities, body.request_features)
        aliases = route_aliases(inputs.entity_keys, self._args.canary_percent)
        rows = await self._explanations.explain(
            token, model, inputs, aliases, self._services.model_request_names(body.request_features)
        )
        return ExplainResponse(model=model, request_id=rid, explanations=rows)

    async def _allow_model(self, authorization: str | None, model: str) -> str:
        """The caller's token once it may predict with ``model`` (404 for another model)."""
        token = _bearer(authorization)
        if model != self._args.model_name:
            await self._services.authorize_async(token, "predict", "models")
            raise NotFoundError(f"no deployed model {model!r}", details={"model": model})
        await self._services.authorize_async(token, "predict", f"model:{model}")
        return token

    async def _shadow(self, rid: str, model: str, inputs: Any, request_names: list[str]) -> None:
        """Score with ``shadow`` and log it; never affects the response."""
        try:
            scored: Scored = await self._scorer.score(
                inputs.names, inputs.matrix, ["shadow"] * len(inputs.entity_keys), request_names
            )
        except Exception as exc:  # noqa: BLE001 - shadow must never fail the real request
            log.warning("shadow scoring failed", extra={"error": repr(exc)})
            return
        if scored:
            self._tap.submit(
                ServedBatch(
                    request_id=rid,
                    model=model,
                    aliases=["shadow"] * len(scored),
                    versions=[v for _, v, _ in scored],
                    entity_keys=inputs.entity_keys,
                    feature_names=inputs.names,
                    features=inputs.matrix,
                    predictions=[s for s, _, _ in scored],
                )
            )

    @api.post("/v1/recommend/{model}", response_model=RecommendResponse, responses=_ERRORS)
    async def recommend(
        self,
        body: RecommendRequest,
        model: str = Path(max_length=200),
        authorization: str | None = Header(None),
    ) -> RecommendResponse:
        """``k`` items for a user from the ranker's champion; every impression is logged.

        The user's recent views are ``context.recent_views`` before the online store's
        list (``ranker_recent_views``) or, without one, the ranker's index; the user's
        category activity is the store's (``ranker_category_activity``) or the
        index's; a store that does not answer is a fallback to the index, named in
        ``fallback``.
        """
        started = time.perf_counter()
        rid = request_id() or new_request_id()
        token = _bearer(authorization)
        if self._ranker is None or model != self._args.ranker_model:
            await self._services.authorize_async(token, "predict", "models")
            raise NotFoundError(f"no deployed ranker {model!r}", details={"model": model})
        await self._services.authorize_async(token, "predict", f"model:{model}")
        answer, stored = await recommend_with_stored_user(
            self._ranker,
            self._stored_user,
            body.user_id,
            k=body.k,
            exclude=body.exclude,
            context=body.context.recent_views,
        )
        n = len(answer.items)
        if n:
            ranks = np.arange(1, n + 1, dtype=np.float64)[:, None]
            self._impressions.submit(
                ServedBatch(
                    request_id=rid,
                    model=model,
                    aliases=["champion"] * n,
                    versions=[answer.version] * n,
                    entity_keys=[
                        entity_key({"product_id": item, "user_id": body.user_id})
                        for item in answer.items
                    ],
                    feature_names=(*RANKING_FEATURES, "rank", "item_id"),
                    features=np.hstack(
                        [answer.features, ranks, np.asarray(answer.items, np.float64)[:, None]]
                    ),
                    predictions=answer.scores,
                )
            )
        Metrics.prediction_latency(model, answer.version, time.perf_counter() - started)
        return RecommendResponse(
            model=model,
            version=answer.version,
            items=[
                RecommendedItem(item_id=i, score=s)
                for i, s in zip(answer.items, answer.scores, strict=True)
            ],
            request_id=rid,
            recent_views_source=stored.source,
            category_activity_source=stored.activity_source,
            fallback=stored.fallback,
        )

    @api.post("/v1/features/online", response_model=OnlineFeaturesResponse, responses=_ERRORS)
    async def online_features(
        self, body: OnlineFeaturesRequest, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        """Feast-compatible online feature retrieval."""
        token = _bearer(authorization)
        await self._services.authorize_async(token, "features:read", "features")
        return await self._services.online_features_async(token, body)

    @api.post(
        "/get-online-features",
        response_model=FeastOnlineFeaturesResponse,
        response_model_exclude_none=True,
        responses=_ERRORS,
    )
    async def feast_online_features(
        self, body: FeastOnlineFeaturesRequest, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        """Feast's feature-server route: the same read, answered in Feast's shape."""
        token = _bearer(authorization)
        await self._services.authorize_async(token, "features:read", "features")
        return feast_response(await self._services.read_online_async(token, body), body)

    @api.get("/v1/models", response_model=list[ModelSummary], responses=_ERRORS)
    async def list_models(self, authorization: str | None = Header(None)) -> list[Any]:
        """Registered models with their aliases."""
        await self._allow(authorization, "predict", "models")
        registry = self._services.breakers.registry
        models = await registry.call(
            lambda: _actor_call(self._registry.submit(ModelRegistry.list_models))
        )
        return cast("list[Any]", models)

    @api.get("/v1/models/{name}", response_model=ModelDetail, responses=_ERRORS)
    async def model_detail(
        self, name: str = Path(max_length=200), authorization: str | None = Header(None)
    ) -> ModelDetail:
        """A model's versions, and which version each alias serves in this application."""
        await self._allow(authorization, "predict", f"model:{name}")
        registry = self._services.breakers.registry
        infos = await registry.call(
            lambda: _actor_call(self._registry.submit(ModelRegistry.versions, name))
        )
        serving: Mapping[str, int] = {}
        if name == self._args.model_name:
            serving = await self._scorer.versions()
        return ModelDetail(
            name=name,
            versions=[
                ModelVersion(
                    version=i.version, aliases=list(i.aliases), run_id=i.run_id, metrics=i.metrics
                )
                for i in infos
            ],
            serving=dict(serving),
        )

    @api.post("/v1/feedback", response_model=FeedbackResponse, responses=_ERRORS)
    async def feedback(
        self, body: FeedbackRequest, authorization: str | None = Header(None)
    ) -> FeedbackResponse:
        """Observed labels by request id, joined to logged predictions by the monitor;
        clicks and purchases of recommended items, appended to the feedback log."""
        await self._allow(authorization, "predict", f"model:{body.model}")
        matched = 0
        if body.labels:
            monitor = self._platform.drift_monitor()
            matched = await _actor_call(
                monitor.submit(
                    DriftMonitor.feedback,
                    body.model,
                    dict(body.labels),
                    credential=self._services.credential,
                )
            )
        if body.interactions:
            await asyncio.to_thread(self._feedback_log.append, body.model, body.interactions)
        return FeedbackResponse(
            model=body.model,
            received=len(body.labels) + len(body.interactions),
            matched=int(matched),
            interactions=len(body.interactions),
        )

    @api.get("/v1/monitoring/{model}", responses=_ERRORS)
    async def monitoring(
        self, model: str = Path(max_length=200), authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        """The DriftMonitor's report of a model: windows, drift, alerts. For the ranker:
        CTR, precision, recall and NDCG at k per window, from its impression and
        feedback logs, and under ``fairness`` the DriftMonitor's report of its exposure
        and NDCG per group per window (absent while the monitor does not watch it)."""
        await self._allow(authorization, "audit:read", f"model:{model}")
        if self._ranker is not None and model == self._args.ranker_model:
            quality = await asyncio.to_thread(
                ranking_report,
                Lake(self._settings.lake.root),
                model,
                window_s=self._settings.monitoring.window_seconds or 3600.0,
            )
            watching = self._platform.drift_monitor_if_running()
            try:
                if watching is None:
                    return quality
                fairness = await _actor_call(watching.submit(DriftMonitor.report, model))
            except NotFoundError:
                return quality
            return {**quality, "fairness": fairness}
        monitor = self._platform.drift_monitor()
        report = await _actor_call(monitor.submit(DriftMonitor.report, model))
        return cast("dict[str, Any]", report)

    @api.post("/v1/events", status_code=202, response_model=EventsReceipt, responses=_ERRORS)
    async def events(
        self, body: EventsRequest, authorization: str | None = Header(None)
    ) -> EventsReceipt:
        """Validate events against their source's contract; publish the accepted ones."""
        await self._allow(authorization, "events:write", f"source:{body.source}")
        return await asyncio.to_thread(self._intake.publish, body.source, body.events)

    @api.post(
        "/v1/governance/erase",
        status_code=202,
        response_model=ErasureAccepted,
        responses=_ERRORS,
    )
    async def erase(
        self, body: EraseRequest, response: Response, authorization: str | None = Header(None)
    ) -> ErasureAccepted:
        """Start erasing a data subject from every store (a Ray task, so the erasure
        outlives the request); the receipt is at ``Location``."""
        token = _bearer(authorization)
        started = await asyncio.to_thread(
            erase_subject, self._settings, token, body.entity, body.reason
        )
        erasure_id = str(started["erasure_id"])
        response.headers["Location"] = f"/v1/governance/erasures/{erasure_id}"
        return ErasureAccepted(erasure_id=erasure_id)

    @api.get(
        "/v1/governance/erasures/{erasure_id}", response_model=ErasureStatus, responses=_ERRORS
    )
    async def erasure(
        self, erasure_id: str = Path(max_length=64), authorization: str | None = Header(None)
    ) -> Any:
        """An erasure's receipt: running, done or failed, per-store counts and the
        verification scan."""
        await self._allow(authorization, "governance:erase", "erasures")
        receipt = await asyncio.to_thread(erasure_receipt, self._settings, erasure_id)
        await self._allow(authorization, "governance:erase", f"subject:{receipt['subject']}")
        return receipt

    async def _allow(self, authorization: str | None, action: str, resource: str) -> None:
        token = _bearer(authorization)
        await self._services.authorize_async(token, action, resource)

    def check_health(self) -> None:
        """Unhealthy when the prediction tap's thread died or in-ingress scoring is lost."""
        if not self._tap.running or not self._impressions.running:
            raise ServiceUnavailableError("the prediction tap stopped")
        if self._ranker is not None and not self._ranker.following:
            raise ServiceUnavailableError("ingress replica lost its ranker's alias watch")
        if not self._gate.running:
            raise ServiceUnavailableError("the auth gate's refresher stopped")
        if not self._scorer.healthy:
            raise ServiceUnavailableError("ingress replica lost its champion or alias watch")

    def __del__(self) -> None:
        gate = getattr(self, "_gate", None)
        if gate is not None:
            gate.stop()
        for name in ("_tap", "_impressions"):
            tap = getattr(self, name, None)
            if tap is not None:
                tap.stop()
        ranker = getattr(self, "_ranker", None)
        if ranker is not None:
            ranker.stop()
        scorer = getattr(self, "_scorer", None)
        if isinstance(scorer, LocalScorer):
            scorer.stop()


def build_app(args: AppArgs) -> Any:
    """Build the Serve application graph (``serve run``/``serve deploy`` and ``entai deploy``).

    Serve validates a config file's ``args`` into :class:`AppArgs` through the
    annotation, so ``import_path: entai.deployments.app:build_app`` works as is.
    With ``score_in_ingress`` (the default) the graph is the Ingress alone (it scores
    in-process); without, Ingress -> Model. Serve's access line is on for both only with
    ``serve.access_log: all`` (:mod:`entai.deployments.access_log`).
    """
    logging_config = serve_logging_config(settings_of(args).serve)
    ingress_deployment = cast("Deployment", Ingress).options(logging_config=logging_config)
    if args.ingress_replicas is not None:
        ingress_deployment = ingress_deployment.options(num_replicas=args.ingress_replicas)
    if args.score_in_ingress:
        return ingress_deployment.bind(None, args)
    model_deployment = cast("Deployment", Model).options(logging_config=logging_config)
    if args.model_replicas is not None:
        model_deployment = model_deployment.options(num_replicas=args.model_replicas)
    return ingress_deployment.bind(model_deployment.bind(args), args)
