"""The user's recent views for a recommendation, read from the online store.

A ranker's interaction index holds each user's recent views as of its training run;
the stream workers keep a fresher list online within seconds of a view. When the
application names that list feature (``AppArgs.ranker_recent_views``, a
``"view:feature"`` reference to a list of item ids keyed by the user alone), the
ingress reads it for every recommendation, through the same online client and the
same ``online_store`` circuit breaker (its timeout, ``serve.online_read_timeout_s``)
as the predict route's feature reads, and the stored list stands in for the index's
(:func:`entai.shared.recommend.merge_recent_views` puts the request's session views
in front of it).

A store that is down, slow, or whose breaker is open does not fail the request: the
answer falls back to the index's views (plus the session's), says so in the
response (``recent_views_source: "index"`` and ``fallback``: ``timeout``,
``unavailable``, ``breaker_open`` or ``invalid_value``) and counts it in the metric
``entai_recommend_fallbacks``. A user the store has no (fresh) list for is answered
from the index too, without a fallback: the store answered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

from entai.actors.core import Metrics
from entai.deployments.circuit_breaker import CircuitBreaker
from entai.deployments.recommend import Recommendation
from entai.shared.core import ConfigError, EntaiError, ServiceUnavailableError
from entai.shared.features import (
    Definitions,
    FeatureStatus,
    FeatureViewProjection,
    ReadResult,
    ValueType,
)
from entai.shared.recommend import merge_recent_views

__all__ = ["RecentViewsReader", "StoredViews", "ViewSource", "recommend_with_recent_views"]

log = logging.getLogger(__name__)

ViewSource = Literal["store", "index"]
"""Where a recommendation's older views came from: the online store or the index."""


class _Reads(Protocol):
    """The online client's batched read (:class:`~entai.actors.features.OnlineFeatureClient`)."""

    async def read_async(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
    ) -> list[ReadResult]: ...


class _Ranks(Protocol):
    """What the ingress asks its ranker (:class:`~entai.deployments.recommend.RankerRuntime`)."""

    def recommend(
        self,
        user: int,
        *,
        k: int,
        exclude: Sequence[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
    ) -> Recommendation: ...


@dataclass(frozen=True)
class StoredViews:
    """What the store said about a user's recent views.

    Attributes:
        views: The stored list, most recent first; None when the index's views count
            (no list stored for the user, or no answer from the store).
        fallback: Why the store gave no answer (``timeout``, ``unavailable``,
            ``breaker_open``, ``invalid_value``); None when it answered.
    """

    views: list[int] | None
    fallback: str | None = None

    @property
    def source(self) -> ViewSource:
        """``store`` when the stored list is used, else ``index``."""
        return "index" if self.views is None else "store"


class RecentViewsReader:
    """Reads one user's list of recently viewed item ids from the online store.

    Args:
        projection: The list feature (one feature of a view keyed by one join key).
        features: The online client.
        breaker: The replica's ``online_store`` breaker (bounds and counts each read).
        model: The ranker's name (the fallback metric's tag).
    """

    def __init__(
        self,
        projection: FeatureViewProjection,
        features: _Reads,
        breaker: CircuitBreaker,
        *,
        model: str,
    ) -> None:
        view = projection.view
        (self._key,) = view.join_keys
        (self._feature,) = projection.features
        self._view = view.name
        self._ttl = view.ttl
        self._features = features
        self._breaker = breaker
        self._model = model

    @classmethod
    def of(
        cls,
        ref: str,
        definitions: Definitions,
        features: _Reads,
        breaker: CircuitBreaker,
        *,
        model: str,
    ) -> RecentViewsReader:
        """The reader of ``ref`` (``"view:feature"``) in ``definitions``.

        Raises:
            ConfigError: ``ref`` names no feature, an on-demand view's output, a
                feature that is not a list of int64 item ids, or a view not keyed by the
                user alone.
        """
        try:
            on_demand = definitions.on_demand([ref])
            projections = definitions.resolve([ref])
        except (EntaiError, ValueError) as exc:
            raise ConfigError(
                f"ranker_recent_views {ref!r} is not a feature of the definitions: {exc}",
                details={"field": "ranker_recent_views", "ref": ref},
            ) from None
        if on_demand:
            raise ConfigError(
                f"ranker_recent_views {ref!r} is an on-demand view's output, computed per "
                "request, not a feature kept online",
                details={"field": "ranker_recent_views", "ref": ref},
            )
        (projection,) = projections  # a stored feature resolves to its own view alone
        view = projection.view
        (feature,) = projection.features
        dtype = view.field(feature).dtype
        if dtype is not ValueType.LIST_INT64:
            raise ConfigError(
                f"ranker_recent_views {ref!r} is {dtype.value}, not a list of item ids "
                f"({ValueType.LIST_INT64.value})",
                details={"field": "ranker_recent_views", "ref": ref},
            )
        if len(view.join_keys) != 1:
            raise ConfigError(
                f"ranker_recent_views {ref!r}: view {view.name!r} is keyed by "
                f"{list(view.join_keys)}, not by the user alone",
                details={"field": "ranker_recent_views", "ref": ref},
            )
        return cls(projection, features, breaker, model=model)

    @property
    def ref(self) -> str:
        """The feature read, ``view:feature``."""
        return f"{self._view}:{self._feature}"

    async def read(self, user: int) -> StoredViews:
        """The user's stored views, or why the index's views must do.

        Never raises for an unavailable store: that is a fallback.
        """
        try:
            (result,) = await self._breaker.call(
                lambda: self._features.read_async(
                    {self._view: [self._feature]},
                    [{self._key: user}],
                    {self._view: self._ttl},
                    join_keys={self._view: [self._key]},
                )
            )
        except ServiceUnavailableError as exc:
            return self._fallback(_reason(exc), exc)
        if result.statuses[0][0] is not FeatureStatus.PRESENT:
            return StoredViews(None)
        value = result.values[0][0]
        try:
            return StoredViews([int(item) for item in value])
        except (TypeError, ValueError) as exc:
            return self._fallback("invalid_value", exc)

    def _fallback(self, reason: str, exc: Exception) -> StoredViews:
        Metrics.recommend_fallback(self._model, reason)
        if reason != "breaker_open":  # an open breaker already was logged as failures
            log.warning(
                "recommending from the index: the online store's %s did not answer (%s)",
                self.ref,
                reason,
                extra={"error": repr(exc), "model": self._model},
            )
        return StoredViews(None, reason)


def _reason(exc: ServiceUnavailableError) -> str:
    """``breaker_open``, ``timeout`` or ``unavailable``, from the breaker's error."""
    details = getattr(exc, "details", None) or {}
    if details.get("breaker") == "open":
        return "breaker_open"
    if "timeout_s" in details:
        return "timeout"
    return "unavailable"


async def recommend_with_recent_views(
    ranker: _Ranks,
    reader: RecentViewsReader | None,
    user: int,
    *,
    k: int,
    exclude: Sequence[int] = (),
    context: Sequence[int] = (),
) -> tuple[Recommendation, StoredViews]:
    """The ranker's answer for ``user``, with the stored views when ``reader`` gives them.

    ``context`` (the request's session views, newest first) comes first; the stored
    list follows without the items the context names; without a stored list (no
    reader, none stored, a fallback) the index's views follow, as before.
    """
    stored = StoredViews(None) if reader is None else await reader.read(user)
    history = None if stored.views is None else merge_recent_views(context, stored.views)
    answer = ranker.recommend(user, k=k, exclude=exclude, session=context, history=history)
    return answer, stored
