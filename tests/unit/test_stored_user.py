"""A recommendation's user from the online store (recent views, category activity):
the merge, the one read, the fallback."""

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
from entai.deployments.recommend import Recommendation, recommend
from entai.deployments.schemas import RecommendedItem, RecommendResponse
from entai.deployments.stored_user import (
    StoredUser,
    StoredUserReader,
    recommend_with_stored_user,
)
from entai.shared.core import ConfigError, ServiceUnavailableError
from entai.shared.features import (
    Definitions,
    Entity,
    FeatureStatus,
    FeatureView,
    Field,
    ReadResult,
    ValueType,
    entity_key,
)
from entai.shared.recommend import (
    RANKING_FEATURES,
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

ACTIVITY = "product_category_affinity:category_activity_30d"


class FakeStore:
    """The online client's ``read_async``: answers ``value`` for the recent views and
    ``activity[category]`` for the category activity (or raises, or stalls)."""

    def __init__(
        self,
        value: Any = None,
        *,
        activity: Mapping[str, Any] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.value = value
        self.activity = dict(activity or {})
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
        keys: Mapping[str, Sequence[str]] | None = None,
    ) -> list[ReadResult]:
        self.calls.append((dict(view_features), list(entity_rows), dict(ttls), dict(keys or {})))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return [self._result(view, (keys or {})[view]) for view in view_features]

    def asked(self, keys: Sequence[str]) -> list[tuple[int, str]]:
        """The (user, category) pairs of the users and categories the test uses."""
        pairs = [(u, c) for u in (1, 42) for c in ("books", "home", "toys")]
        return [p for p in pairs if entity_key({"user_id": p[0], "category": p[1]}) in keys]

    def _result(self, view: str, keys: Sequence[str]) -> ReadResult:
        if view == "user_recent_views":
            values: list[Any] = [self.value]
        else:
            by_key = {entity_key({"user_id": u, "category": c}): c for u, c in self.asked(keys)}
            values = [self.activity.get(by_key[k]) for k in keys]
        statuses = [FeatureStatus.NOT_FOUND if v is None else FeatureStatus.PRESENT for v in values]
        return ReadResult(("x",), [values], [statuses], [None] * len(keys))  # feature-major


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "entai.actors.core.Metrics.recommend_fallback",
        lambda model, reason: counted.append((model, reason)),
    )
    return counted


def _reader(
    store: FakeStore,
    breaker: CircuitBreaker | None = None,
    *,
    views: str | None = REF,
    activity: str | None = None,
) -> StoredUserReader:
    breaker = breaker or CircuitBreaker("online_store", timeout_s=0.2)
    reader = StoredUserReader.of(
        DEMO, store, breaker, model="ranker", recent_views=views, category_activity=activity
    )
    assert reader is not None
    return reader


def test_the_stored_list_is_read_by_the_users_key_within_the_views_ttl(
    fallbacks: list[tuple[str, str]],
) -> None:
    store = FakeStore([5, 2, 5])
    got = asyncio.run(_reader(store).read(42))
    assert got == StoredUser([5, 2, 5])
    assert (got.source, got.activity_source, got.fallback) == ("store", "index", None)
    ((views, _, ttls, keys),) = store.calls
    assert views == {"user_recent_views": ["recent_product_ids"]}
    assert ttls == {"user_recent_views": timedelta(days=30)}
    assert keys == {"user_recent_views": [entity_key({"user_id": 42})]}
    assert fallbacks == []


def test_the_views_and_every_category_activity_are_one_read(
    fallbacks: list[tuple[str, str]],
) -> None:
    store = FakeStore([7], activity={"toys": 3.0, "books": 0.0})
    got = asyncio.run(_reader(store, activity=ACTIVITY).read(42, ["books", "home", "toys"]))
    assert got == StoredUser([7], {"books": 0.0, "toys": 3.0})
    assert (got.source, got.activity_source, got.fallback) == ("store", "store", None)
    ((views, _, ttls, keys),) = store.calls  # one call
    assert views == {
        "user_recent_views": ["recent_product_ids"],
        "product_category_affinity": ["category_activity_30d"],
    }
    assert ttls["product_category_affinity"] == timedelta(days=30)
    assert keys["product_category_affinity"] == [
        entity_key({"user_id": 42, "category": c}) for c in ("books", "home", "toys")
    ]
    # the activity alone
    alone = FakeStore(activity={"home": 1.0})
    got = asyncio.run(_reader(alone, views=None, activity=ACTIVITY).read(1, ["home"]))
    assert (got.views, got.activity) == (None, {"home": 1.0})
    assert list(alone.calls[0][0]) == ["product_category_affinity"]
    assert fallbacks == []


def test_a_user_without_stored_values_is_answered_from_the_index_without_a_fallback(
    fallbacks: list[tuple[str, str]],
) -> None:
    got = asyncio.run(_reader(FakeStore(None), activity=ACTIVITY).read(42, ["books"]))
    assert (got.views, got.activity, got.fallback) == (None, None, None)
    assert (got.source, got.activity_source) == ("index", "index")
    assert fallbacks == []


def test_a_store_that_is_down_slow_or_refused_by_its_breaker_is_a_fallback(
    fallbacks: list[tuple[str, str]],
) -> None:
    breaker = CircuitBreaker("online_store", failures=2, open_s=60.0, timeout_s=0.05)
    down = FakeStore(error=ServiceUnavailableError("redis is unreachable"))
    read = _reader(down, breaker, activity=ACTIVITY).read(1, ["books"])
    assert asyncio.run(read) == StoredUser(fallback="unavailable")
    slow = FakeStore([1], activity={"books": 1.0})
    slow.delay_s = 1.0
    read = _reader(slow, breaker, activity=ACTIVITY).read(1, ["books"])
    assert asyncio.run(read) == StoredUser(fallback="timeout")
    assert breaker.state is BreakerState.OPEN
    healthy = FakeStore([1], activity={"books": 1.0})
    read = _reader(healthy, breaker, activity=ACTIVITY).read(1, ["books"])
    assert asyncio.run(read) == StoredUser(fallback="breaker_open")
    assert healthy.calls == []  # an open breaker does not call the store
    assert fallbacks == [
        ("ranker", "unavailable"),
        ("ranker", "timeout"),
        ("ranker", "breaker_open"),
    ]


@pytest.mark.parametrize(
    ("views", "activity"),
    [(["seven"], None), ([1], {"books": "a lot"}), ([1], {"books": -1.0}), ([1], {"books": [2]})],
)
def test_a_stored_value_that_is_no_list_of_ids_or_no_activity_is_a_fallback(
    fallbacks: list[tuple[str, str]], views: Any, activity: Any
) -> None:
    got = asyncio.run(
        _reader(FakeStore(views, activity=activity), activity=ACTIVITY).read(1, ["books"])
    )
    assert got == StoredUser(fallback="invalid_value")
    assert fallbacks == [("ranker", "invalid_value")]


def test_nothing_to_read_is_no_reader_and_no_categories_is_no_activity_read() -> None:
    assert StoredUserReader.of(DEMO, FakeStore(), CircuitBreaker("s"), model="r") is None
    store = FakeStore([3])
    got = asyncio.run(_reader(store, activity=ACTIVITY).read(1, []))
    assert (got.views, got.activity) == ([3], None)
    assert list(store.calls[0][0]) == ["user_recent_views"]


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("product_category_affinity:nope", "is not a feature of the definitions"),
        ("user_stats:user_views_7d", "not by the user and one string"),
        ("user_recent_views:recent_product_ids", "not a number"),
    ],
)
def test_a_feature_that_cannot_be_a_users_category_activity_is_a_config_error(
    ref: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        _reader(FakeStore(), views=None, activity=ref)
    assert caught.value.details["field"] == "ranker_category_activity"
    assert _reader(FakeStore(), views=None, activity="user_category_stats:views_7d")


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
        StoredUserReader.of(DEMO, FakeStore(), CircuitBreaker("s"), model="r", recent_views=ref)
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

    def reader(ref: str) -> StoredUserReader | None:
        return StoredUserReader.of(
            definitions, FakeStore(), CircuitBreaker("s"), model="r", recent_views=ref
        )

    assert reader("views:items")
    with pytest.raises(ConfigError, match="on-demand view's output"):
        reader("derived:n_items")


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
        StoredUserReader.of(
            definitions,
            FakeStore(),
            CircuitBreaker("s"),
            model="r",
            recent_views="pair_views:items",
        )


@pytest.mark.parametrize(
    ("name", "ref"), [("ranker_recent_views", REF), ("ranker_category_activity", ACTIVITY)]
)
def test_stored_user_features_are_configuration_of_a_deployed_ranker(name: str, ref: str) -> None:
    base = {"model_name": "m", "feature_service": "s", "definitions_module": "d"}
    args = AppArgs(**base, ranker_model="r", **{name: ref})
    assert getattr(args, name) == ref
    assert getattr(AppArgs(**base), name) is None
    with pytest.raises(ValidationError, match=f"{name} needs ranker_model"):
        AppArgs(**base, **{name: ref})
    with pytest.raises(ValidationError, match=name):
        AppArgs(**base, ranker_model="r", **{name: "no colon"})


# --- the answer --------------------------------------------------------------------------


class Ranker:
    """The ranker runtime over INDEX with a model that scores the price."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def categories(self) -> list[str]:
        return INDEX.categories

    def recommend(
        self,
        user: int,
        *,
        k: int,
        exclude: Sequence[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
        activity: Mapping[str, float] | None = None,
    ) -> Recommendation:
        self.asked.append({"session": list(session), "history": history, "activity": activity})
        return recommend(
            by_price(),
            INDEX,
            user,
            k=k,
            exclude=exclude,
            session=session,
            history=history,
            activity=activity,
        )


def test_the_answer_uses_context_then_the_stored_views(fallbacks: list[tuple[str, str]]) -> None:
    ranker = Ranker()
    answer, stored = asyncio.run(
        recommend_with_stored_user(ranker, _reader(FakeStore([7, 2, 7])), 1, k=4, context=[2, 6])
    )
    assert ranker.asked == [{"session": [2, 6], "history": [7, 7], "activity": None}]
    assert (stored.source, stored.fallback) == ("store", None)
    want = recommend(by_price(), INDEX, 1, k=4, session=[2, 6], history=[7, 7])
    assert answer.items == want.items


def test_the_answer_ranks_with_the_stored_activity_of_the_champions_categories(
    fallbacks: list[tuple[str, str]],
) -> None:
    # user 1's index activity is books; the store says home since
    policy = CandidatePolicy(top_categories=1, recent_views=0)
    store = FakeStore(activity={"home": 2.0, "toys": 1.0})
    ranker = Ranker()
    answer, stored = asyncio.run(
        recommend_with_stored_user(ranker, _reader(store, views=None, activity=ACTIVITY), 1, k=2)
    )
    assert ranker.asked[0]["activity"] == {"home": 2.0, "toys": 1.0}
    assert stored.activity_source == "store"
    keys = store.calls[0][3]["product_category_affinity"]
    assert keys == [entity_key({"user_id": 1, "category": c}) for c in INDEX.categories]
    want = recommend(by_price(), INDEX, 1, k=2, activity={"home": 2.0, "toys": 1.0})
    assert (answer.items, answer.scores) == (want.items, want.scores)
    share = RANKING_FEATURES.index("user_category_share")
    assert answer.items[0] == 7  # home: 30.0, the dearest
    assert answer.features[0, share] == 2 / 3
    assert recommend(by_price(), INDEX, 1, k=2).features[0, share] == 0.0  # the index's
    # the top category decides the candidates
    fresh = recommend(by_price(), INDEX, 1, k=1, activity=stored.activity, policy=policy)
    assert fresh.items == [7]
    assert recommend(by_price(), INDEX, 1, k=1, policy=policy).items == [3]  # books


def test_without_the_store_the_answer_is_the_index_and_the_context_as_before(
    fallbacks: list[tuple[str, str]],
) -> None:
    before = recommend(by_price(), INDEX, 1, k=4, session=[6])
    down = _reader(FakeStore(error=ServiceUnavailableError("down")), activity=ACTIVITY)
    for reader, fallback in ((None, None), (down, "unavailable")):
        ranker = Ranker()
        answer, stored = asyncio.run(
            recommend_with_stored_user(ranker, reader, 1, k=4, context=[6])
        )
        assert ranker.asked == [{"session": [6], "history": None, "activity": None}]
        assert (answer.items, stored.source, stored.fallback) == (before.items, "index", fallback)
        assert stored.activity_source == "index"


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
    assert stored.category_activity_source == "index"
    assert not stored.HasField("fallback")


def test_the_one_read_through_a_real_online_client_and_store() -> None:
    from datetime import UTC, datetime

    from entai.actors.features import OnlineFeatureClient
    from entai.shared.features import FeatureRow, MemoryOnlineStore

    client = OnlineFeatureClient(None, direct_store=MemoryOnlineStore())
    now = datetime.now(UTC)
    rows = [
        FeatureRow(
            "user_recent_views",
            entity_key({"user_id": 9}),
            {"recent_product_ids": [4, 1], "recent_categories": ["toys", "books"]},
            now,
            now,
        ),
        *(
            FeatureRow(
                "product_category_affinity",
                entity_key({"user_id": 9, "category": c}),
                {"category_share_30d": share, "category_activity_30d": activity},
                now,
                now,
            )
            for c, share, activity in (("books", 0.25, 1.0), ("toys", 0.75, 3.0))
        ),
    ]
    client.write(rows)
    reader = StoredUserReader.of(
        DEMO, client, CircuitBreaker("s"), model="r", recent_views=REF, category_activity=ACTIVITY
    )
    assert reader is not None
    got = asyncio.run(reader.read(9, ["books", "home", "toys"]))
    assert got == StoredUser([4, 1], {"books": 1.0, "toys": 3.0})
    assert asyncio.run(reader.read(8, ["books"])) == StoredUser()  # nothing stored
