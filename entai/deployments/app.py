"""The entai Serve application: Ingress (FastAPI) -> Model, features looked up in-process.

The feature lookup runs inside the ingress replica (a direct online-store read, or
one fan-out to the shard actors), not as a separate deployment: a separate
deployment would cost another proxy/handle hop on every prediction.
"""

# No `from __future__ import annotations` here: Serve's class-based FastAPI views read
# the route signatures at runtime, and string annotations would turn the pydantic
# request bodies into query parameters.

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

from fastapi import FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Deployment
from ray.serve.handle import DeploymentHandle

from entai.deployments.http_errors import install_error_handlers
from entai.deployments.schemas import (
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    PredictRequest,
    PredictResponse,
)
from entai.shared.errors import AuthenticationError, NotFoundError
from entai.shared.logs import new_request_id, request_context
from entai.shared.settings import EntaiSettings

__all__ = ["AppArgs", "Ingress", "Model", "build_app"]

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """Arguments of :func:`build_app` (also the ``args`` of a Serve config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str
    alias: str = "champion"
    feature_service: str
    definitions_module: str
    settings: EntaiSettings | None = None
    model_replicas: int = 1
    ingress_replicas: int = 1


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing bearer token", details={"reason": "missing"})
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Authorization header must be 'Bearer <token>'", details={"reason": "malformed"}
        )
    return token.strip()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class Model:
    """Scores feature vectors with the version that holds the alias; batched."""

    def __init__(self, args: AppArgs) -> None:
        import mlflow.xgboost

        from entai.actors.model_registry import ModelRegistry

        settings = args.settings or EntaiSettings()
        registry = ModelRegistry(settings.mlflow)
        self._info = registry.resolve(args.model_name, args.alias)
        self._booster = mlflow.xgboost.load_model(self._info.uri)
        self._features: list[str] = list(self._booster.feature_names or [])
        log.info("model loaded", extra={"model": args.model_name, "version": self._info.version})

    def feature_names(self) -> list[str]:
        """Inputs the model expects, in order."""
        return self._features

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def score(self, rows: list[list[float]]) -> list[tuple[float, int]]:
        """One score per feature vector, with the version that produced it."""
        import numpy as np

        matrix = np.asarray(rows, dtype=np.float32)
        scores = self._booster.inplace_predict(matrix)
        return [(float(s), self._info.version) for s in scores]

    def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy."""
        if self._booster is None:
            raise RuntimeError("no model loaded")


api = FastAPI(title="entai", version="0.1.0", docs_url="/docs")
install_error_handlers(api)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
@serve.ingress(api)
class Ingress:
    """HTTP translation: auth, online features, model call, response."""

    def __init__(self, model: DeploymentHandle[Any], args: AppArgs) -> None:
        from entai.deployments.platform import PlatformServices

        self._model = model
        self._args = args
        self._services = PlatformServices.connect(args.settings or EntaiSettings(), args)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        """Liveness of the ingress replica."""
        return {"status": "ok"}

    @api.post("/v1/predict/{model}", response_model=PredictResponse)
    async def predict(
        self, model: str, body: PredictRequest, authorization: str | None = Header(None)
    ) -> PredictResponse:
        """Score entities with the model's champion."""
        with request_context(new_request_id()) as rid:
            self._services.authorize(_bearer(authorization), "predict", f"model:{model}")
            if model != self._args.model_name:
                raise NotFoundError(f"no deployed model {model!r}", details={"model": model})
            vectors = self._services.feature_vectors(body.entities, body.request_features)
            results: Sequence[tuple[float, int]] = await asyncio.gather(
                *(self._model.score.remote(v) for v in vectors)
            )
            return PredictResponse(
                model=model,
                version=results[0][1],
                predictions=[s for s, _ in results],
                request_id=rid,
            )

    @api.post("/v1/features/online", response_model=OnlineFeaturesResponse)
    async def online_features(
        self, body: OnlineFeaturesRequest, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        """Feast-compatible online feature retrieval."""
        with request_context(new_request_id()):
            token = _bearer(authorization)
            self._services.authorize(token, "features:read", "features")
            return self._services.online_features(token, body)

    @api.post("/get-online-features", response_model=OnlineFeaturesResponse)
    async def feast_online_features(
        self,
        request: Request,
        body: OnlineFeaturesRequest,
        authorization: str | None = Header(None),
    ) -> dict[str, Any]:
        """The same handler at Feast's path, so Feast HTTP clients work unchanged."""
        return await self.online_features(body, authorization)


def build_app(args: AppArgs) -> Any:
    """Build the Serve application graph (used by ``serve run`` and ``entai deploy``)."""
    model_deployment = cast("Deployment", Model)
    ingress_deployment = cast("Deployment", Ingress)
    model = model_deployment.options(num_replicas=args.model_replicas).bind(args)
    return ingress_deployment.options(num_replicas=args.ingress_replicas).bind(model, args)
