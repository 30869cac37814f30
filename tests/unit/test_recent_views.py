"""A recommendation's recent views from the online store: the merge, the read, the fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from tiny_ranker import INDEX, by_price

from entai.deployments import grpc_messages as messages
from entai.deployments.app_args import AppArgs
from entai.deployments.circuit_breaker import BreakerState, CircuitBreaker
from entai.deployments.recent_views import (
    RecentViewsReader,
    StoredViews,
    recommend_with_recent_views,
)
from entai.deployments.recommend import Recommendation, recommend
from entai.deployments.schemas import RecommendedItem, RecommendResponse
from entai.shared.core import ConfigError, ServiceUnavailableError
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureStatus,
    FeatureView,
    Field,
    ReadResult,
    ValueType,
)
from entai.shared.recommend import (
    CandidatePolicy,
    merge_recent_views,
)

DEMO = Definitions.from_module("entai.demo.features")
REF = "user_recent_views:recent_product_ids"
# --- the merge ---------------------------------------------------------------------------


def test_context_views_come_first_and_the_stored_copies_of_them_are_dropped() -> None:
    assert merge_recent_views([7, 2], [2, 5, 7, 5, 1]) == [5, 5, 1]
    assert merge_recent_views([], [3, 3]) == [3, 3]  # stored repeats are separate views
    assert merge_recent_views([4], []) == []


def test_history_replaces_the_indexed_views_and_follows_the_session() -> None:
    assert INDEX.user_recent[1] == [4, 1, 0]
    assert INDEX.recent(1, [6]) == [6, 4, 1, 0]
    assert INDEX.recent(1, [6], history=[7, 7]) == [6, 7, 7]
    assert INDEX.recent(1, history=[]) == []


def test_ranking_with_a_history_is_ranking_with_that_history_in_the_index() -> None:
    # user 1's indexed views are books/toys; stored views of 7 (home) bring its co-views
    stored = replace(INDEX, user_recent={**INDEX.user_recent, 1: [7]})
    policy = CandidatePolicy(top_categories=1)
    got = recommend(by_price(), INDEX, 1, k=5, history=[7], policy=policy)
    want = recommend(by_price(), stored, 1, k=5, policy=policy)
    assert (got.items, got.scores) == (want.items, want.scores)
    assert got.items != recommend(by_price(), INDEX, 1, k=5, policy=policy).items


# --- the read ----------------------------------------------------------------------------


class FakeStore:
    """The online client's ``read_async``: answers ``value`` (or raises, or stalls)."""

    def __init__(self, value: Any = None, *, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.delay_s = 0.0
        self.calls: list[tuple[Any, ...]] = []

    async def read_async(
        self,
        view_features: Mapping[str, Sequence[str]],
        entity_rows: Sequence[Mapping[str, Any]],
        ttls: Mapping[str, timedelta | None],
        *,
        join_keys: Mapping[str, Sequence[str]] | None = None,
    ) -> list[ReadResult]:
        self.calls.append((dict(view_features), list(entity_rows), dict(ttls), join_keys))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        status = FeatureStatus.NOT_FOUND if self.value is None else FeatureStatus.PRESENT
        return [ReadResult(("recent_product_ids",), [[self.value]], [[status]], [None])]


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "entai.actors.core.Metrics.recommend_fallback",
        lambda model, reason: counted.append((model, reason)),
    )
    return counted


def _reader(store: FakeStore, breaker: CircuitBreaker | None = None) -> RecentViewsReader:
    breaker = breaker or CircuitBreaker("online_store", timeout_s=0.2)
    return RecentViewsReader.of(REF, DEMO, store, breaker, model="ranker")


def test_the_stored_list_is_read_by_the_users_key_within_the_views_ttl(
    fallbacks: list[tuple[str, str]],
) -> None:
    store = FakeStore([5, 2, 5])
    got = asyncio.run(_reader(store).read(42))
    assert got == StoredViews([5, 2, 5])
    assert (got.source, got.fallback) == ("store", None)
    ((views, rows, ttls, keys),) = store.calls
    assert views == {"user_recent_views": ["recent_product_ids"]}
    assert rows == [{"user_id": 42}]
    assert ttls == {"user_recent_views": timedelta(days=30)}
    assert keys == {"user_recent_views": ["user_id"]}
    assert fallbacks == []


def test_a_user_without_a_stored_list_is_answered_from_the_index_without_a_fallback(
    fallbacks: list[tuple[str, str]],
) -> None:
    got = asyncio.run(_reader(FakeStore(None)).read(42))
    assert (got.views, got.source, got.fallback) == (None, "index", None)
    assert fallbacks == []


def test_a_store_that_is_down_slow_or_refused_by_its_breaker_is_a_fallback(
    fallbacks: list[tuple[str, str]],
) -> None:
    breaker = CircuitBreaker("online_store", failures=2, open_s=60.0, timeout_s=0.05)
    down = FakeStore(error=ServiceUnavailableError("redis is unreachable"))
    assert asyncio.run(_reader(down, breaker).read(1)) == StoredViews(None, "unavailable")
    slow = FakeStore([1])
    slow.delay_s = 1.0
    assert asyncio.run(_reader(slow, breaker).read(1)) == StoredViews(None, "timeout")
    assert breaker.state is BreakerState.OPEN
    healthy = FakeStore([1])
    assert asyncio.run(_reader(healthy, breaker).read(1)) == StoredViews(None, "breaker_open")
    assert healthy.calls == []  # an open breaker does not call the store
    assert fallbacks == [
        ("ranker", "unavailable"),
        ("ranker", "timeout"),
        ("ranker", "breaker_open"),
    ]


def test_a_stored_value_that_is_no_list_of_ids_is_a_fallback(
    fallbacks: list[tuple[str, str]],
) -> None:
    got = asyncio.run(_reader(FakeStore(["seven"])).read(1))
    assert got == StoredViews(None, "invalid_value")
    assert fallbacks == [("ranker", "invalid_value")]


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("user_recent_views:nope", "is not a feature of the definitions"),
        ("no_view:recent_product_ids", "is not a feature of the definitions"),
        ("user_recent_views:recent_categories", "not a list of item ids"),
        ("user_stats:user_views_7d", "not a list of item ids"),
        ("product_category_affinity:category_share_30d", "not a list of item ids"),
    ],
)
def test_a_feature_that_cannot_be_a_users_recent_views_is_a_config_error(
    ref: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        RecentViewsReader.of(ref, DEMO, FakeStore(), CircuitBreaker("s"), model="r")
    assert caught.value.details["field"] == "ranker_recent_views"


def test_an_on_demand_feature_is_a_config_error() -> None:
    from entai.shared.features import OnDemandFeatureView

    user = Entity(name="user", join_keys=("user_id",))
    views = FeatureView(
        name="views",
        entities=(user,),
        schema=(Field(name="items", dtype=ValueType.LIST_INT64),),
        source="events",
        ttl=timedelta(days=1),
    )
    derived = OnDemandFeatureView(
        name="derived",
        sources=(views,),
        request_schema=(),
        schema=(Field(name="n_items", dtype=ValueType.INT64),),
        transform=lambda frame: frame.assign(n_items=frame["items"].map(len)),
    )
    definitions = Definitions(entities=[user], views=[views], on_demand_views=[derived])
    assert RecentViewsReader.of(
        "views:items", definitions, FakeStore(), CircuitBreaker("s"), model="r"
    )
    with pytest.raises(ConfigError, match="on-demand view's output"):
        RecentViewsReader.of(
            "derived:n_items", definitions, FakeStore(), CircuitBreaker("s"), model="r"
        )


def test_a_list_feature_of_a_view_with_two_join_keys_is_a_config_error() -> None:
    user, shop = (
        Entity(name="user", join_keys=("user_id",)),
        Entity(name="shop", join_keys=("shop_id",)),
    )
    pair = FeatureView(
        name="pair_views",
        entities=(user, shop),
        schema=(Field(name="items", dtype=ValueType.LIST_INT64),),
        source="events",
        ttl=timedelta(days=1),
    )
    definitions = Definitions(entities=[user, shop], views=[pair])
    with pytest.raises(ConfigError, match="not by the user alone"):
        RecentViewsReader.of(
            "pair_views:items", definitions, FakeStore(), CircuitBreaker("s"), model="r"
        )


def test_recent_views_are_configuration_of_a_deployed_ranker() -> None:
    base = {"model_name": "m", "feature_service": "s", "definitions_module": "d"}
    args = AppArgs(**base, ranker_model="r", ranker_recent_views=REF)
    assert args.ranker_recent_views == REF
    assert AppArgs(**base).ranker_recent_views is None
    with pytest.raises(ValidationError, match="ranker_recent_views needs ranker_model"):
        AppArgs(**base, ranker_recent_views=REF)
    with pytest.raises(ValidationError, match="ranker_recent_views"):
        AppArgs(**base, ranker_model="r", ranker_recent_views="no colon")


# --- the answer --------------------------------------------------------------------------


class Ranker:
    """The ranker runtime over INDEX with a model that scores the price."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def recommend(
        self,
        user: int,
        *,
        k: int,
        exclude: Sequence[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
    ) -> Recommendation:
        self.asked.append({"session": list(session), "history": history})
        return recommend(
            by_price(), INDEX, user, k=k, exclude=exclude, session=session, history=history
        )


def test_the_answer_uses_context_then_the_stored_views(fallbacks: list[tuple[str, str]]) -> None:
    ranker = Ranker()
    answer, stored = asyncio.run(
        recommend_with_recent_views(ranker, _reader(FakeStore([7, 2, 7])), 1, k=4, context=[2, 6])
    )
    assert ranker.asked == [{"session": [2, 6], "history": [7, 7]}]
    assert (stored.source, stored.fallback) == ("store", None)
    want = recommend(by_price(), INDEX, 1, k=4, session=[2, 6], history=[7, 7])
    assert answer.items == want.items


def test_without_the_store_the_answer_is_the_index_and_the_context_as_before(
    fallbacks: list[tuple[str, str]],
) -> None:
    before = recommend(by_price(), INDEX, 1, k=4, session=[6])
    down = _reader(FakeStore(error=ServiceUnavailableError("down")))
    for reader, fallback in ((None, None), (down, "unavailable")):
        ranker = Ranker()
        answer, stored = asyncio.run(
            recommend_with_recent_views(ranker, reader, 1, k=4, context=[6])
        )
        assert ranker.asked == [{"session": [6], "history": None}]
        assert (answer.items, stored.source, stored.fallback) == (before.items, "index", fallback)


def test_the_grpc_answer_says_where_the_views_came_from_and_any_fallback() -> None:
    items = [RecommendedItem(item_id=3, score=0.5)]
    fell = messages.recommend_response(
        RecommendResponse(model="r", version=2, items=items, request_id="q", fallback="timeout")
    )
    assert (fell.recent_views_source, fell.fallback) == ("index", "timeout")
    stored = messages.recommend_response(
        RecommendResponse(
            model="r", version=2, items=items, request_id="q", recent_views_source="store"
        )
    )
    assert stored.recent_views_source == "store"
    assert not stored.HasField("fallback")
