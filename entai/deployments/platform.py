"""What an ingress replica needs from the platform, connected once per replica.

Authorization goes through a short-lived local cache of the governance state, and
online features are read in-process (a direct read of Redis or of the SQLite shard
files, or a shard fan-out for the memory backend), so a prediction costs no extra
deployment hop for either. This
is the FeatureLookup stage of the serving graph: it turns a request's entities and
request-time features into named model input columns. The ``*_async`` methods are the
predict path's and the feature routes': they run on the replica's event loop (shard
calls awaited, an allowed token decided from the cache inline) and leave only blocking
work to a thread; each call to governance or the online store goes through the
replica's :class:`~entai.deployments.circuit_breaker.Breakers` (a timeout each, 503 at
once while a dependency keeps failing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from entai.actors.backends import RedisOnlineStore, SqliteOnlineStore
from entai.actors.core import span
from entai.actors.features import OnlineFeatureClient, shard_name, sqlite_directory
from entai.actors.governance import AuthCache, actor_auth_cache
from entai.actors.services import Services
from entai.deployments.circuit_breaker import Breakers
from entai.deployments.schemas import OnlineFeaturesRequest
from entai.shared.core import InvalidInputError
from entai.shared.features import (
    Definitions,
    FeatureViewProjection,
    OnDemandFeatureView,
    OnlineStore,
    ReadResult,
    compute_on_demand,
    entity_key,
)
from entai.shared.governance import Decision
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.deployments.app_args import AppArgs

__all__ = ["FeatureColumn", "FeatureInputs", "OnlineRead", "PlatformServices", "ReadPlan"]

log = logging.getLogger(__name__)

_MASKED = "***"


@dataclass(frozen=True)
class FeatureInputs:
    """Model inputs for a request's entity rows.

    Attributes:
        names: Column names (online features, then request-time features).
        matrix: Rows x ``names``; missing values are NaN.
        entity_keys: Canonical key of each entity row (canary routing, the log).
        views: The feature views read, in the order of ``reads``.
        reads: The online read of each view (statuses and event timestamps, which an
            explanation reports).
    """

    names: tuple[str, ...]
    matrix: np.ndarray
    entity_keys: list[str]
    views: tuple[str, ...] = ()
    reads: tuple[ReadResult, ...] = ()


@dataclass(frozen=True)
class FeatureColumn:
    """One feature's answer for a request's entity rows, before an API shapes it.

    Attributes:
        ref: ``view:feature``.
        values: In entity order; ``None`` unless PRESENT, masked where the principal
            may not read the feature in the clear.
        statuses: Status names (``PRESENT``, ``NOT_FOUND``, ``NULL_VALUE``,
            ``OUTSIDE_MAX_AGE``), in entity order.
        event_timestamps: The stored row's event time per entity (``None`` if NOT_FOUND).
    """

    ref: str
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[datetime | None]

    @property
    def view(self) -> str:
        """The feature view's name."""
        return self.ref.split(":", 1)[0]

    @property
    def feature(self) -> str:
        """The feature's name within its view."""
        return self.ref.split(":", 1)[1]


@dataclass(frozen=True)
class OnlineRead:
    """An online read for the feature routes, shared by entai's answer and Feast's.

    Attributes:
        views: The feature views read, in request order.
        join_keys: The request's entity keys that are join keys of those views, in
            the request's order.
        entities: The request's entity columns.
        columns: One per feature, grouped by view, in request order.
    """

    views: tuple[str, ...]
    join_keys: tuple[str, ...]
    entities: Mapping[str, Sequence[Any]]
    columns: tuple[FeatureColumn, ...]


@dataclass(frozen=True)
class ReadPlan:
    """What reading a set of feature-view projections needs, worked out once.

    Attributes:
        join_keys: Every view's join keys, sorted: an entity row's canonical key.
        full_key_views: Views keyed by all of ``join_keys``, whose entity key is the
            row's canonical key.
    """

    join_keys: tuple[str, ...]
    view_features: dict[str, list[str]]
    ttls: dict[str, timedelta | None]
    view_join_keys: dict[str, list[str]]
    full_key_views: tuple[str, ...]

    @classmethod
    def of(cls, projections: Sequence[FeatureViewProjection]) -> ReadPlan:
        join_keys = tuple(sorted({k for p in projections for k in p.view.join_keys}))
        return cls(
            join_keys=join_keys,
            view_features={p.view.name: list(p.features) for p in projections},
            ttls={p.view.name: p.view.ttl for p in projections},
            view_join_keys={p.view.name: list(p.view.join_keys) for p in projections},
            full_key_views=tuple(
                p.view.name for p in projections if set(p.view.join_keys) == set(join_keys)
            ),
        )


@dataclass
class PlatformServices:
    """Auth, definitions and online features for one serving replica.

    ``credential`` is the replica's service credential: what it presents to the
    governance service, the feature shards and the drift monitor, after its routes
    authorized the user.
    """

    auth: AuthCache
    features: OnlineFeatureClient
    credential: str
    definitions: Definitions
    model_features: tuple[FeatureViewProjection, ...]
    model_plan: ReadPlan
    breakers: Breakers = field(default_factory=Breakers)
    on_demand: tuple[OnDemandFeatureView, ...] = ()

    @classmethod
    def connect(
        cls, settings: EntaiSettings, args: AppArgs, services: Services, credential: str
    ) -> PlatformServices:
        """Take the governance and shard services and load the definitions module
        (``credential``: the replica's service credential)."""
        shards = services.shards()
        definitions = Definitions.from_module(args.definitions_module)
        direct: OnlineStore | None = None
        store = settings.online_store
        if store.type == "redis":
            direct = RedisOnlineStore(
                store.url.get_secret_value(),
                store.key_prefix,
                cache_rows=store.replica_cache_rows,
                cache_max_age_s=store.replica_cache_max_age_s,
            )
        elif store.type == "sqlite":
            if store.path is None:
                store = settings.resolved().online_store
                assert store.type == "sqlite"
            ids = [shard_name(i) for i in range(store.num_shards)]
            direct = SqliteOnlineStore(sqlite_directory(store), ids)
        model_features = tuple(definitions.resolve(args.feature_service))
        guard = settings.security.auth_guard
        return cls(
            auth=actor_auth_cache(
                services.governance(),
                credential,
                ttl_s=guard.cache_ttl_s,
                max_stale_s=guard.max_stale_s,
                timeout_s=guard.governance_timeout_s,
            ),
            features=OnlineFeatureClient(shards, direct_store=direct, credential=credential),
            credential=credential,
            definitions=definitions,
            model_features=model_features,
            model_plan=ReadPlan.of(model_features),
            breakers=Breakers.from_settings(settings),
            on_demand=tuple(definitions.on_demand(args.feature_service)),
        )

    @property
    def on_demand_request_columns(self) -> frozenset[str]:
        """Request features the feature service's on-demand views take."""
        return frozenset(f.name for view in self.on_demand for f in view.request_schema)

    def model_request_names(self, request_features: Mapping[str, Any]) -> list[str]:
        """The request features that must be model inputs: those the feature service's
        on-demand views consume are the service's inputs, not the model's."""
        consumed = self.on_demand_request_columns
        return [name for name in request_features if name not in consumed]

    def authorize(self, token: str, action: str, resource: str) -> Decision:
        """An allowed decision, or AuthenticationError / PermissionDeniedError."""
        return self.auth.authorize(token, action, resource)

    async def authorize_async(self, token: str, action: str, resource: str) -> Decision:
        """:meth:`authorize` for an event loop: inline when the cache allows, else a thread
        (through the governance breaker); timed as the span ``entai.authorize``."""
        with span("entai.authorize", {"entai.action": action, "entai.resource": resource}) as s:
            decision = self.auth.authorize_local(token, action, resource)
            if s is not None:
                s.set_attribute("entai.auth.cached", decision is not None)
            if decision is not None:
                return decision
            return await self.breakers.governance.call(
                lambda: asyncio.to_thread(self.auth.authorize, token, action, resource)
            )

    def _read(self, plan: ReadPlan, entities: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        rows = _entity_rows(plan, entities)
        return self.features.get_online_features(
            plan.view_features, rows, plan.ttls, join_keys=plan.view_join_keys
        )

    async def feature_inputs(
        self, entities: Mapping[str, Sequence[Any]], request_features: Mapping[str, Sequence[Any]]
    ) -> FeatureInputs:
        """Online features of the model's feature service plus request-time features.

        The online read is awaited on the running loop. Each row's canonical entity key
        is built once: it keys the log and canary routing, and the read of every view
        keyed by all the join keys. The service's on-demand views are then computed
        from the request features and the online values, by the function training sets
        use (:func:`entai.shared.features.compute_on_demand`).

        Raises:
            InvalidInputError: a join key is missing, a request feature is not numeric,
                or one an on-demand view needs is missing.
        """
        plan = self.model_plan
        rows = _entity_rows(plan, entities)
        entity_keys = [entity_key(row) for row in rows]
        results = await self.breakers.online_store.call(
            lambda: self.features.read_async(
                plan.view_features,
                rows,
                plan.ttls,
                join_keys=plan.view_join_keys,
                keys=dict.fromkeys(plan.full_key_views, entity_keys),
            )
        )
        online = [name for result in results for name in result.features]
        columns: list[Sequence[Any]] = [vals for result in results for vals in result.values]
        extra = [k for k in request_features if k not in online]
        columns += [request_features[k] for k in extra]
        if self.on_demand:
            computed = _on_demand_columns(
                self.on_demand, [*online, *extra], columns, len(entity_keys)
            )
            extra += list(computed)
            columns += list(computed.values())
        try:
            matrix = np.array(columns, dtype=np.float64).T
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                "request_features must hold numbers (or null)",
                details={"field": "request_features", "features": extra},
            ) from exc
        return FeatureInputs(
            (*online, *extra), matrix, entity_keys, tuple(plan.view_features), tuple(results)
        )

    def _feature_request(
        self, body: OnlineFeaturesRequest
    ) -> tuple[list[FeatureViewProjection], dict[str, Any]]:
        """The projections a feature request names, and each feature's PII class."""
        source: Any = body.feature_service if body.feature_service is not None else body.features
        projections = self.definitions.resolve(source)
        pii = {
            f"{p.view.name}:{name}": p.view.field(name).pii
            for p in projections
            for name in p.features
        }
        return list(projections), pii

    def read_online(self, token: str, body: OnlineFeaturesRequest) -> OnlineRead:
        """The online read behind both feature routes, PII masked for the principal.

        Values of features the principal may not read in the clear (no
        ``features:read_pii``) are masked; statuses are their names.

        Raises:
            AuthenticationError, PermissionDeniedError: the token may not read features.
            NotFoundError: an unknown service, view or feature.
            InvalidInputError: a join key is missing.
        """
        projections, pii = self._feature_request(body)
        decision = self.auth.authorize_features(token, pii, "features")
        plan = ReadPlan.of(projections)
        return _online_read(projections, plan, body, decision, self._read(plan, body.entities))

    async def read_online_async(self, token: str, body: OnlineFeaturesRequest) -> OnlineRead:
        """:meth:`read_online` for an event loop, each call through its breaker.

        Raises:
            ServiceUnavailableError: governance or the online store did not answer in
                time, or its breaker is open.
        """
        projections, pii = self._feature_request(body)
        decision = await self.breakers.governance.call(
            lambda: asyncio.to_thread(self.auth.authorize_features, token, pii, "features")
        )
        plan = ReadPlan.of(projections)
        rows = _entity_rows(plan, body.entities)
        response = await self.breakers.online_store.call(
            lambda: self.features.get_online_features_async(
                plan.view_features, rows, plan.ttls, join_keys=plan.view_join_keys
            )
        )
        return _online_read(projections, plan, body, decision, response)

    def online_features(self, token: str, body: OnlineFeaturesRequest) -> dict[str, Any]:
        """entai's own answer (DESIGN §5): one result per feature, ISO timestamps or null.

        Feature names are ``view:feature`` with ``full_feature_names``, else the feature
        name alone; join keys are not echoed.
        """
        return _entai_answer(self.read_online(token, body), body)

    async def online_features_async(
        self, token: str, body: OnlineFeaturesRequest
    ) -> dict[str, Any]:
        """:meth:`online_features` for an event loop (see :meth:`read_online_async`)."""
        return _entai_answer(await self.read_online_async(token, body), body)


def _on_demand_columns(
    views: Sequence[OnDemandFeatureView],
    names: Sequence[str],
    columns: Sequence[Sequence[Any]],
    rows: int,
) -> dict[str, list[Any]]:
    """The on-demand views' outputs for one request, as model input columns."""
    frame = pd.DataFrame(dict(zip(names, columns, strict=True)), index=range(rows))
    out = compute_on_demand(views, frame)
    new = [f.name for view in views for f in view.schema]
    return {name: out[name].astype("float64").to_numpy(na_value=np.nan).tolist() for name in new}


def _online_read(
    projections: Sequence[FeatureViewProjection],
    plan: ReadPlan,
    body: OnlineFeaturesRequest,
    decision: Decision,
    response: Mapping[str, Any],
) -> OnlineRead:
    """A Feast-shaped read's answer as an :class:`OnlineRead`, masked per ``decision``."""
    masked = set(decision.masked_features)
    columns = tuple(
        FeatureColumn(
            ref=ref,
            values=[None if v is None else _MASKED for v in result["values"]]
            if ref in masked
            else list(result["values"]),
            statuses=[str(s) for s in result["statuses"]],
            event_timestamps=list(result["event_timestamps"]),
        )
        for ref, result in zip(
            response["metadata"]["feature_names"], response["results"], strict=True
        )
    )
    return OnlineRead(
        views=tuple(p.view.name for p in projections),
        join_keys=tuple(k for k in body.entities if k in plan.join_keys),
        entities=body.entities,
        columns=columns,
    )


def _entai_answer(read: OnlineRead, body: OnlineFeaturesRequest) -> dict[str, Any]:
    """entai's own answer to a feature read: one result per feature, ISO timestamps."""
    return {
        "metadata": {
            "feature_names": [c.ref if body.full_feature_names else c.feature for c in read.columns]
        },
        "results": [
            {
                "values": c.values,
                "statuses": c.statuses,
                "event_timestamps": [
                    None if ts is None else ts.isoformat() for ts in c.event_timestamps
                ],
            }
            for c in read.columns
        ],
    }


def _entity_rows(plan: ReadPlan, entities: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """One join-key mapping per entity row.

    Raises:
        InvalidInputError: a join key the plan needs is missing.
    """
    missing = sorted(set(plan.join_keys) - set(entities))
    if missing:
        raise InvalidInputError(
            f"entities lack join key(s) {missing}", details={"missing": missing}
        )
    n = len(entities[plan.join_keys[0]]) if plan.join_keys else 0
    return [{k: entities[k][i] for k in plan.join_keys} for i in range(n)]
