"""What an ingress replica needs from the platform, connected once per replica.

Authorization goes through a short-lived local cache of the governance state, and
online features are read in-process (shard fan-out or a direct store read), so a
prediction costs no extra deployment hop for either.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entai.actors.auth_cache import AuthCache
from entai.actors.feature_shard import shard_name
from entai.actors.governance import ACTOR_NAME as GOVERNANCE
from entai.actors.online_client import OnlineFeatureClient
from entai.deployments.schemas import OnlineFeaturesRequest
from entai.shared.definitions import Definitions, FeatureViewProjection
from entai.shared.errors import InvalidInputError
from entai.shared.policy import Decision
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.deployments.app import AppArgs

__all__ = ["PlatformServices"]

log = logging.getLogger(__name__)

_MASKED = "***"


@dataclass
class PlatformServices:
    """Auth, definitions and online features for one serving replica."""

    auth: AuthCache
    features: OnlineFeatureClient
    definitions: Definitions
    model_features: tuple[FeatureViewProjection, ...]

    @classmethod
    def connect(cls, settings: EntaiSettings, args: AppArgs) -> PlatformServices:
        """Find the governance and shard actors and load the definitions module."""
        import ray

        namespace = settings.ray.namespace
        governance = ray.get_actor(GOVERNANCE, namespace=namespace)
        shards = [
            ray.get_actor(shard_name(i), namespace=namespace)
            for i in range(settings.online_store.num_shards)
        ]
        definitions = Definitions.from_module(args.definitions_module)
        return cls(
            auth=AuthCache.for_actor(governance),
            features=OnlineFeatureClient(shards),
            definitions=definitions,
            model_features=tuple(definitions.resolve(args.feature_service)),
        )

    def authorize(self, token: str, action: str, resource: str) -> Decision:
        """An allowed decision, or AuthenticationError / PermissionDeniedError."""
        return self.auth.authorize(token, action, resource)

    def _read(
        self,
        projections: Sequence[FeatureViewProjection],
        entities: Mapping[str, Sequence[Any]],
    ) -> dict[str, Any]:
        needed = {k for p in projections for k in p.view.join_keys}
        missing = sorted(needed - set(entities))
        if missing:
            raise InvalidInputError(
                f"entities lack join key(s) {missing}", details={"missing": missing}
            )
        n = len(next(iter(entities.values())))
        rows = [{k: entities[k][i] for k in needed} for i in range(n)]
        return self.features.get_online_features(
            {p.view.name: list(p.features) for p in projections},
            rows,
            {p.view.name: p.view.ttl for p in projections},
            join_keys={p.view.name: list(p.view.join_keys) for p in projections},
        )

    def feature_vectors(
        self, entities: Mapping[str, Sequence[Any]], request_features: Mapping[str, Sequence[Any]]
    ) -> list[list[float]]:
        """One model input vector per entity row; missing values are NaN."""
        response = self._read(self.model_features, entities)
        columns = [
            [math.nan if v is None else float(v) for v in result["values"]]
            for result in response["results"]
        ]
        return [list(row) for row in zip(*columns, strict=True)]

    def online_features(self, token: str, body: OnlineFeaturesRequest) -> dict[str, Any]:
        """Feast-shaped online features, PII masked for principals without read_pii."""
        source: Any = body.feature_service if body.feature_service is not None else body.features
        projections = self.definitions.resolve(source)
        pii = {
            f"{p.view.name}:{name}": p.view.field(name).pii
            for p in projections
            for name in p.features
        }
        decision = self.auth.authorize_features(token, pii, "features")
        response = self._read(projections, body.entities)
        masked = set(decision.masked_features)
        names = response["metadata"]["feature_names"]
        for name, result in zip(names, response["results"], strict=True):
            if name in masked:
                result["values"] = [None if v is None else _MASKED for v in result["values"]]
            result["statuses"] = [str(s) for s in result["statuses"]]
            result["event_timestamps"] = [
                None if ts is None else ts.isoformat() for ts in result["event_timestamps"]
            ]
        if not body.full_feature_names:
            response["metadata"]["feature_names"] = [n.split(":", 1)[1] for n in names]
        return response
