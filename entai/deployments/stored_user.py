"""What a recommendation reads about its user from the online store.

A ranker's interaction index holds each user's recent views and category activity as
of its training run; the stream workers keep fresher values online within seconds of
an event. The application can name either or both features:

- ``AppArgs.ranker_recent_views``: a ``"view:feature"`` list of item ids keyed by the
  user alone (the demo's ``user_recent_views:recent_product_ids``); the stored list
  stands in for the index's views (:func:`entai.shared.recommend.merge_recent_views`
  puts the request's session views in front of it);
- ``AppArgs.ranker_category_activity``: a ``"view:feature"`` number keyed by the user
  and a (string) category, the user's activity in the category as
  :func:`entai.shared.recommend.category_activity` defines it (the demo's
  ``product_category_affinity:category_activity_30d``); read for every category of
  the champion's index, it stands in for the index's activity of the user in the top
  categories and the category features (their share is its share of the sum, as in
  training).

The ingress reads them for every recommendation in one call of the online client
(one round trip: both views, all of the user's categories), through the
``online_store`` circuit breaker the predict route's feature reads use (its timeout,
``serve.online_read_timeout_s``).

A store that is down, slow, or whose breaker is open does not fail the request: the
answer falls back to the index (plus the session's views), says so in the response
(``recent_views_source`` / ``category_activity_source: "index"`` and ``fallback``:
``timeout``, ``unavailable``, ``breaker_open`` or ``invalid_value``) and counts it in
the metric ``entai_recommend_fallbacks``. A user the store has no (fresh) value for
is answered from the index too, without a fallback: the store answered.
"""

from __future__ import annotations

import logging
import math
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
    FeatureView,
    ReadResult,
    ValueType,
    entity_key,
)
from entai.shared.recommend import merge_recent_views

__all__ = [
    "Source",
    "StoredUser",
    "StoredUserReader",
    "recommend_with_stored_user",
]

log = logging.getLogger(__name__)

Source = Literal["store", "index"]
"""Where a recommendation's user signal came from: the online store or the index."""

_NUMBERS = (ValueType.FLOAT64, ValueType.INT64)


class _Reads(Protocol):
    """The online client's batched read (:class:`~entai.actors.features.OnlineFeatureClient`)."""

    async def read_async(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
        keys: Mapping[str, Sequence[str]] | None = None,
    ) -> list[ReadResult]: ...


class _Ranks(Protocol):
    """What the ingress asks its ranker (:class:`~entai.deployments.recommend.RankerRuntime`)."""

    def categories(self) -> list[str]: ...

    def recommend(
        self,
        user: int,
        *,
        k: int,
        exclude: Sequence[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
        activity: Mapping[str, float] | None = None,
    ) -> Recommendation: ...


@dataclass(frozen=True)
class StoredUser:
    """What the store said about a user.

    Attributes:
        views: The stored recent views, most recent first; None when the index's
            count (none configured or stored for the user, or no answer).
        activity: The stored activity per category; None when the index's counts.
        fallback: Why the store gave no (usable) answer (``timeout``,
            ``unavailable``, ``breaker_open``, ``invalid_value``); None when it did.
    """

    views: list[int] | None = None
    activity: dict[str, float] | None = None
    fallback: str | None = None

    @property
    def source(self) -> Source:
        """Where the recent views came from: ``store`` or ``index``."""
        return "index" if self.views is None else "store"

    @property
    def activity_source(self) -> Source:
        """Where the category activity came from: ``store`` or ``index``."""
        return "index" if self.activity is None else "store"


@dataclass(frozen=True)
class _Feature:
    """One configured feature: its view, name, ttl and join keys."""

    setting: str
    view: str
    feature: str
    ttl: timedelta | None
    keys: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"


class StoredUserReader:
    """Reads a user's recent views and/or category activity from the online store.

    Build it with :meth:`of`.

    Args:
        features: The online client.
        breaker: The replica's ``online_store`` breaker (bounds and counts each read).
        model: The ranker's name (the fallback metric's tag).
        recent_views: The recent-views list feature, keys ``(user,)``.
        activity: The category-activity feature, keys ``(user, category)``.
    """

    def __init__(
        self,
        features: _Reads,
        breaker: CircuitBreaker,
        *,
        model: str,
        recent_views: _Feature | None = None,
        activity: _Feature | None = None,
    ) -> None:
        self._features = features
        self._breaker = breaker
        self._model = model
        self._views = recent_views
        self._activity = activity

    @classmethod
    def of(
        cls,
        definitions: Definitions,
        features: _Reads,
        breaker: CircuitBreaker,
        *,
        model: str,
        recent_views: str | None = None,
        category_activity: str | None = None,
    ) -> StoredUserReader | None:
        """The reader of the named features (``"view:feature"``); None when none is.

        Raises:
            ConfigError: a name that is no feature kept online (an unknown one, an
                on-demand view's output), a recent-views feature that is not a list
                of int64 item ids of a view keyed by the user alone, or an activity
                feature that is not a number of a view keyed by the user and one
                string (category) key.
        """
        views = None
        if recent_views is not None:
            views = _stored("ranker_recent_views", recent_views, definitions)
            view, feature = definitions.view(views.view), views.feature
            dtype = view.field(feature).dtype
            if dtype is not ValueType.LIST_INT64:
                raise _config(
                    views,
                    f"is {dtype.value}, not a list of item ids ({ValueType.LIST_INT64.value})",
                )
            if len(view.join_keys) != 1:
                raise _config(
                    views,
                    f"view {view.name!r} is keyed by {list(view.join_keys)}, not by the user alone",
                )
        activity = None
        if category_activity is not None:
            activity = _stored("ranker_category_activity", category_activity, definitions)
            view = definitions.view(activity.view)
            dtype = view.field(activity.feature).dtype
            if dtype not in _NUMBERS:
                raise _config(activity, f"is {dtype.value}, not a number")
            activity = _user_and_category(activity, view)
        if views is None and activity is None:
            return None
        return cls(features, breaker, model=model, recent_views=views, activity=activity)

    @property
    def refs(self) -> list[str]:
        """The features read, ``view:feature``."""
        return [f.ref for f in (self._views, self._activity) if f is not None]

    @property
    def reads_activity(self) -> bool:
        """Whether the category activity is read (the request needs the categories)."""
        return self._activity is not None

    async def read(self, user: int, categories: Sequence[str] = ()) -> StoredUser:
        """The user's stored values (activity of ``categories``), or why the index's
        must do. One call of the online client for both features.

        Never raises for an unavailable store: that is a fallback.
        """
        wanted, ttls, keys = _plan(user, categories, views=self._views, activity=self._activity)
        if not wanted:
            return StoredUser()
        try:
            results = await self._breaker.call(
                lambda: self._features.read_async(wanted, [], ttls, keys=keys)
            )
        except ServiceUnavailableError as exc:
            return self._fallback(_reason(exc), exc)
        by_view = dict(zip(wanted, results, strict=True))
        try:
            views = None if self._views is None else _views(by_view[self._views.view])
            activity = (
                None
                if self._activity is None or self._activity.view not in by_view
                else _activity(by_view[self._activity.view], categories)
            )
        except (TypeError, ValueError) as exc:
            return self._fallback("invalid_value", exc)
        return StoredUser(views, activity)

    def _fallback(self, reason: str, exc: Exception) -> StoredUser:
        Metrics.recommend_fallback(self._model, reason)
        if reason != "breaker_open":  # an open breaker already was logged as failures
            log.warning(
                "recommending from the index: the online store's %s did not answer (%s)",
                ", ".join(self.refs),
                reason,
                extra={"error": repr(exc), "model": self._model},
            )
        return StoredUser(fallback=reason)


def _stored(setting: str, ref: str, definitions: Definitions) -> _Feature:
    """The feature ``ref`` names, a stored one (not an on-demand view's output)."""
    try:
        on_demand = definitions.on_demand([ref])
        projections = definitions.resolve([ref])
    except (EntaiError, ValueError) as exc:
        raise ConfigError(
            f"{setting} {ref!r} is not a feature of the definitions: {exc}",
            details={"field": setting, "ref": ref},
        ) from None
    if on_demand:
        raise ConfigError(
            f"{setting} {ref!r} is an on-demand view's output, computed per request, not a "
            "feature kept online",
            details={"field": setting, "ref": ref},
        )
    (projection,) = projections  # a stored feature resolves to its own view alone
    view = projection.view
    (feature,) = projection.features
    return _Feature(setting, view.name, feature, view.ttl, tuple(view.join_keys))


def _config(feature: _Feature, problem: str) -> ConfigError:
    return ConfigError(
        f"{feature.setting} {feature.ref!r} {problem}",
        details={"field": feature.setting, "ref": feature.ref},
    )


def _user_and_category(feature: _Feature, view: FeatureView) -> _Feature:
    """``feature`` with its keys as ``(user key, category key)``: the view must have two
    join keys, exactly one of a string entity (the category)."""
    strings = {
        key
        for entity in view.entities
        if entity.value_type is ValueType.STRING
        for key in entity.join_keys
    }
    category = [k for k in view.join_keys if k in strings]
    user = [k for k in view.join_keys if k not in strings]
    if len(view.join_keys) != 2 or len(category) != 1:
        raise _config(
            feature,
            f"view {view.name!r} is keyed by {list(view.join_keys)}, not by the user and "
            "one string (category) key",
        )
    return _Feature(feature.setting, feature.view, feature.feature, feature.ttl, (*user, *category))


def _plan(
    user: int,
    categories: Sequence[str],
    *,
    views: _Feature | None,
    activity: _Feature | None,
) -> tuple[dict[str, list[str]], dict[str, timedelta | None], dict[str, list[str]]]:
    """One read of both features: per view its feature, ttl and entity keys."""
    wanted: dict[str, list[str]] = {}
    ttls: dict[str, timedelta | None] = {}
    keys: dict[str, list[str]] = {}
    if views is not None:
        (key,) = views.keys
        wanted[views.view] = [views.feature]
        ttls[views.view] = views.ttl
        keys[views.view] = [entity_key({key: user})]
    if activity is not None and categories:
        user_key, category_key = activity.keys
        wanted[activity.view] = [activity.feature]
        ttls[activity.view] = activity.ttl
        keys[activity.view] = [entity_key({user_key: user, category_key: c}) for c in categories]
    return wanted, ttls, keys


def _views(result: ReadResult) -> list[int] | None:
    """The stored list of item ids (None: none stored, or too old)."""
    if result.statuses[0][0] is not FeatureStatus.PRESENT:
        return None
    return [int(item) for item in result.values[0][0]]


def _activity(result: ReadResult, categories: Sequence[str]) -> dict[str, float] | None:
    """Activity per category (categories without a value: 0); None when the store has
    no (fresh) value for any category of the user.

    Raises:
        ValueError: a value that is not a finite, non-negative number.
    """
    out: dict[str, float] = {}
    # feature-major: the one feature's values, one per category
    for category, status, value in zip(
        categories, result.statuses[0], result.values[0], strict=True
    ):
        if status is not FeatureStatus.PRESENT:
            continue
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"activity {value!r} of category {category!r}")
        out[category] = number
    return out or None


def _reason(exc: ServiceUnavailableError) -> str:
    """``breaker_open``, ``timeout`` or ``unavailable``, from the breaker's error."""
    details = getattr(exc, "details", None) or {}
    if details.get("breaker") == "open":
        return "breaker_open"
    if "timeout_s" in details:
        return "timeout"
    return "unavailable"


async def recommend_with_stored_user(
    ranker: _Ranks,
    reader: StoredUserReader | None,
    user: int,
    *,
    k: int,
    exclude: Sequence[int] = (),
    context: Sequence[int] = (),
) -> tuple[Recommendation, StoredUser]:
    """The ranker's answer for ``user``, with what ``reader`` gives from the store.

    ``context`` (the request's session views, newest first) comes first; the stored
    list follows without the items the context names; without a stored list (no
    reader, none stored, a fallback) the index's views follow, as before. The stored
    activity (of the champion's categories) replaces the index's when there is one.
    """
    if reader is None:
        stored = StoredUser()
    else:
        categories = ranker.categories() if reader.reads_activity else []
        stored = await reader.read(user, categories)
    history = None if stored.views is None else merge_recent_views(context, stored.views)
    answer = ranker.recommend(
        user, k=k, exclude=exclude, session=context, history=history, activity=stored.activity
    )
    return answer, stored
