"""Recommendations over real HTTP on the platform: a trained, gated ranker in the ingress.

A small generated world trains a ranker on Ray (examples at cutoffs, held-out NDCG
against popularity), which is logged to MLflow with its interaction index,
registered and promoted through the registry's gates; the Serve app of
:mod:`test_serve_http` then serves it next to the propensity model on port 8131, and
over gRPC on 9131 (``EntaiInference/Recommend``, through a client compiled from
entai.proto, :mod:`grpc_client`), where it must answer what HTTP answers. The app reads
users' recent views and category activity from the online store
(``ranker_recent_views``, ``ranker_category_activity``): one user, :data:`STORED_USER`,
has both stored there, which the service ranks with in place of the index's; the others
have none and are answered from the index.

The online store is a Redis server of the module's own (:class:`owned_redis.OwnedRedis`),
so that a test can kill it: recommendations then still answer 200, from the index,
saying they fell back, and read the store again once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc_client
import httpx
import pyarrow.parquet as pq
import pytest
from credentials import service_of
from gated_ranker import WORLD, GatedRanker, train_gated_ranker
from owned_redis import OwnedRedis
from test_serve_http import (
    ModelTokens,
    Platform,
    assert_refused,
    deploy_platform,
    refusal_cases,
    refusal_target,
    teardown_platform,
)

from entai.actors.models import REGISTRANT_TAG
from entai.shared.recommend import merge_recent_views

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

RANKER = "test_ranker"
PORT = 8131
GRPC_TARGET = "127.0.0.1:9131"
RECENT = "user_recent_views:recent_product_ids"
ACTIVITY = "product_category_affinity:category_activity_30d"
STORED_USER = 77
trained_ranker: dict[str, Any] = {}


def _train_and_promote(settings: Any, registry: Any, tokens: ModelTokens) -> None:
    from entai.actors.models import ModelRegistry
    from entai.actors.services import Services

    ranker = train_gated_ranker(settings, RANKER, tokens)
    (move,) = Services.of(settings).registry().call(ModelRegistry.alias_history, RANKER)
    trained_ranker.update(ranker=ranker, promotion=move)
    trained_ranker["stored"] = _store_recent_views(settings, ranker)
    trained_ranker["activity"] = _store_activity(settings, ranker, trained_ranker["stored"])


def _store_recent_views(settings: Any, ranker: GatedRanker) -> list[int]:
    """Write STORED_USER's ``user_recent_views`` online: three products, the first
    (in catalogue order) that change the champion's answer in place of the index's."""
    from datetime import UTC, datetime

    from entai.actors.features import OnlineFeatureClient
    from entai.actors.services import Services
    from entai.demo.generator import EcommerceWorld
    from entai.shared.features import FeatureRow, entity_key

    products = EcommerceWorld(WORLD).products()
    ids, categories = products["product_id"].tolist(), products["category"].tolist()
    without = ranker.local(STORED_USER).items
    start = next(
        i
        for i in range(0, len(ids) - 2, 3)
        if ranker.local(STORED_USER, history=ids[i : i + 3]).items != without
    )
    now = datetime.now(UTC)
    row = FeatureRow(
        "user_recent_views",
        entity_key({"user_id": STORED_USER}),
        {
            "recent_product_ids": ids[start : start + 3],
            "recent_categories": categories[start : start + 3],
        },
        now,
        now,
    )
    shards = Services.of(settings).shards()
    OnlineFeatureClient(shards, credential=service_of(settings)).write([row])
    return [int(i) for i in ids[start : start + 3]]


def _store_activity(settings: Any, ranker: GatedRanker, views: list[int]) -> dict[str, float]:
    """Write STORED_USER's ``product_category_affinity`` online for every category of
    the index: all of their activity in the first category (by name) that changes the
    champion's answer, with the stored views, in place of the index's activity."""
    from datetime import UTC, datetime

    from entai.actors.features import OnlineFeatureClient
    from entai.actors.services import Services
    from entai.shared.features import FeatureRow, entity_key

    categories = ranker.trained.index.categories
    without = ranker.local(STORED_USER, history=views).items
    top = next(
        c
        for c in categories
        if ranker.local(STORED_USER, history=views, activity={c: 4.0}).items != without
    )
    activity = {c: 4.0 if c == top else 0.0 for c in categories}
    now = datetime.now(UTC)
    rows = [
        FeatureRow(
            "product_category_affinity",
            entity_key({"user_id": STORED_USER, "category": c}),
            {"category_share_30d": float(c == top), "category_activity_30d": value},
            now,
            now,
        )
        for c, value in activity.items()
    ]
    shards = Services.of(settings).shards()
    OnlineFeatureClient(shards, credential=service_of(settings)).write(rows)
    return activity


def _ranker() -> GatedRanker:
    ranker: GatedRanker = trained_ranker["ranker"]
    return ranker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedRedis]:
    """The platform's online store: a Redis server this module starts and may kill."""
    server = OwnedRedis(tmp_path_factory.mktemp("online-redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def platform(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory, store: OwnedRedis
) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-recommend"),
        port=PORT,
        grpc_port=int(GRPC_TARGET.rpartition(":")[2]),
        ranker_model=RANKER,
        ranker_recent_views=RECENT,
        ranker_category_activity=ACTIVITY,
        # a dead store costs at most 1 s per request, then nothing for 2 s
        serve_settings={"online_read_timeout_s": 1.0, "breaker_open_s": 2.0},
        settings_overrides={"online_store": {"type": "redis", "num_shards": 1, "url": store.url}},
        before_serve=_train_and_promote,
    )
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as c:
        yield c


def test_the_ranker_was_promoted_through_the_gates_and_beats_popularity(
    platform: Platform,
) -> None:
    ranker = _ranker()
    metrics = ranker.trained.metrics
    assert "champion" in ranker.info.aliases
    # registered as the trainer token's principal, approved as the approver token's
    assert ranker.info.tags[REGISTRANT_TAG] == "ml-engineer"
    promotion = trained_ranker["promotion"]
    assert (promotion["kind"], promotion["alias"]) == ("promote", "champion")
    assert (promotion["version"], promotion["by"]) == (ranker.version, "approver")
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"]


def test_recommendations_are_the_champion_ranking_the_candidates(
    platform: Platform, client: httpx.Client
) -> None:
    for user in (3, 42, 299, 10_000):  # 10_000: unknown user, popular items
        answer = client.post(
            f"/v1/recommend/{RANKER}", json={"user_id": user}, headers=platform.headers()
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        expected = _ranker().local(user)
        assert body["model"] == RANKER
        assert body["version"] == _ranker().version
        assert [i["item_id"] for i in body["items"]] == expected.items
        assert [i["score"] for i in body["items"]] == pytest.approx(expected.scores, rel=1e-6)
        assert answer.headers["x-request-id"] == body["request_id"]
        # nothing stored online for them: their views and activity come from the index
        assert (body["recent_views_source"], body["fallback"]) == ("index", None)
        assert body["category_activity_source"] == "index"


def test_a_users_views_and_activity_in_the_online_store_replace_the_index_s(
    platform: Platform, client: httpx.Client
) -> None:
    stored: list[int] = trained_ranker["stored"]
    activity: dict[str, float] = trained_ranker["activity"]
    answer = client.post(
        f"/v1/recommend/{RANKER}", json={"user_id": STORED_USER}, headers=platform.headers()
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["recent_views_source"], body["fallback"]) == ("store", None)
    assert body["category_activity_source"] == "store"
    got = [i["item_id"] for i in body["items"]]
    assert got == _ranker().local(STORED_USER, history=stored, activity=activity).items
    assert got != _ranker().local(STORED_USER, history=stored).items  # the index's activity
    assert got != _ranker().local(STORED_USER).items  # the index's answer
    # the session's views go first; a stored view the context names counts once
    context = [stored[0], 5]
    with_context = client.post(
        f"/v1/recommend/{RANKER}",
        json={"user_id": STORED_USER, "context": {"recent_views": context}},
        headers=platform.headers(),
    ).json()
    assert [i["item_id"] for i in with_context["items"]] == _ranker().local(
        STORED_USER,
        session=context,
        history=merge_recent_views(context, stored),
        activity=activity,
    ).items


def test_k_and_excluded_items_are_honoured(platform: Platform, client: httpx.Client) -> None:
    first = client.post(
        f"/v1/recommend/{RANKER}", json={"user_id": 5, "k": 4}, headers=platform.headers()
    ).json()
    top = [i["item_id"] for i in first["items"]]
    assert len(top) == 4
    again = client.post(
        f"/v1/recommend/{RANKER}",
        json={"user_id": 5, "k": 4, "exclude": top[:2]},
        headers=platform.headers(),
    ).json()
    got = [i["item_id"] for i in again["items"]]
    assert not set(got) & set(top[:2])
    assert got == _ranker().local(5, 4, exclude=top[:2]).items


@refusal_cases(
    ("k_over_bound", 422, "invalid_input"),
    ("k_zero", 422, "invalid_input"),
    ("too_large", 413, "payload_too_large"),
)
def test_refusals(
    platform: Platform, client: httpx.Client, case: str, status: int, code: str
) -> None:
    path, headers = refusal_target(
        platform, case, f"/v1/recommend/{RANKER}", "/v1/recommend/no_such_ranker"
    )
    body: dict[str, Any] = {"user_id": 1}
    if case == "k_over_bound":
        body["k"] = 101
    elif case == "k_zero":
        body["k"] = 0
    elif case == "too_large":
        body["exclude"] = list(range(400_000))
    assert_refused(client.post(path, json=body, headers=headers), status, code)


def _impressions(platform: Platform, rid: str) -> list[dict[str, Any]]:
    """The impression rows logged under request ``rid`` (waiting up to 30 s for them)."""
    lake = Path(platform.settings.lake.root)
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        files = list((lake / "predictions" / f"model={RANKER}").rglob("*.parquet"))
        rows = [r for f in files for r in pq.read_table(f).to_pylist() if r["request_id"] == rid]
        time.sleep(0.3)
    return rows


def test_impressions_are_logged_and_feedback_is_taken_by_request_and_item(
    platform: Platform, client: httpx.Client
) -> None:
    answer = client.post(
        f"/v1/recommend/{RANKER}", json={"user_id": 7, "k": 3}, headers=platform.headers()
    ).json()
    rid, items = answer["request_id"], [i["item_id"] for i in answer["items"]]
    rows = _impressions(platform, rid)
    assert [int(r["item_id"]) for r in rows] == items
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    assert [r["score"] for r in rows] == pytest.approx([i["score"] for i in answer["items"]])
    feedback = client.post(
        "/v1/feedback",
        json={
            "model": RANKER,
            "interactions": [
                {"request_id": rid, "item_id": items[1], "kind": "click"},
                {"request_id": rid, "item_id": items[1], "kind": "purchase"},
            ],
        },
        headers=platform.headers(),
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json() == {"model": RANKER, "received": 2, "matched": 0, "interactions": 2}
    feedback_dir = Path(platform.settings.lake.root) / "feedback" / f"model={RANKER}"
    (logged,) = feedback_dir.rglob("*.parquet")
    assert pq.read_table(logged).to_pydict()["kind"] == ["click", "purchase"]
    report = client.get(f"/v1/monitoring/{RANKER}", headers=platform.headers(platform.admin))
    assert report.status_code == 200, report.text
    windows = report.json()["windows"]
    assert sum(w["clicked"] for w in windows) == 1
    assert sum(w["impressions"] for w in windows) >= 3
    (judged,) = [w for w in windows if w["lists"]]
    assert judged["precision"] is not None and judged["ndcg"] is not None


# --- the online store stops -------------------------------------------------------------


def _ask(platform: Platform, client: httpx.Client) -> dict[str, Any]:
    answer = client.post(
        f"/v1/recommend/{RANKER}", json={"user_id": STORED_USER}, headers=platform.headers()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_with_the_online_store_killed_recommendations_fall_back_to_the_index_then_recover(
    platform: Platform, client: httpx.Client, store: OwnedRedis
) -> None:
    stored = _ranker().local(
        STORED_USER, history=trained_ranker["stored"], activity=trained_ranker["activity"]
    )
    index = _ranker().local(STORED_USER)
    assert stored.items != index.items
    assert [i["item_id"] for i in _ask(platform, client)["items"]] == stored.items
    store.kill()
    try:
        assert not store.answers()
        reasons = []
        for _ in range(8):  # past the breaker's 5 failures in a row
            body = _ask(platform, client)
            assert [i["item_id"] for i in body["items"]] == index.items
            assert (body["recent_views_source"], body["category_activity_source"]) == (
                "index",
                "index",
            )
            assert body["version"] == _ranker().version
            reasons.append(body["fallback"])
        assert set(reasons) <= {"unavailable", "timeout", "breaker_open"}, reasons
        assert reasons[0] in {"unavailable", "timeout"}
        assert reasons[-1] == "breaker_open"  # no more waiting on a dead store
    finally:
        store.start()  # the same port, the same data (append-only file)
    deadline = time.monotonic() + 60
    body = _ask(platform, client)
    while body["fallback"] is not None and time.monotonic() < deadline:
        time.sleep(0.5)  # the breaker probes again after breaker_open_s
        body = _ask(platform, client)
    assert (body["fallback"], body["recent_views_source"]) == (None, "store"), body
    assert body["category_activity_source"] == "store"
    assert [i["item_id"] for i in body["items"]] == stored.items


# --- the same over gRPC: EntaiInference/Recommend -------------------------------------


@pytest.fixture(scope="module")
def grpc_stubs(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    stubs = grpc_client.compile_stubs(tmp_path_factory.mktemp("grpc-recommend"))
    grpc_client.wait_for_route(GRPC_TARGET, platform.app_name)
    return stubs


def over_grpc(
    platform: Platform, stubs: Path, *calls: tuple[dict[str, Any], str | None]
) -> list[dict[str, Any]]:
    """Answers to ``Recommend`` calls ``(request in proto JSON, token)``."""
    app = [["application", platform.app_name]]
    return grpc_client.call(
        stubs,
        GRPC_TARGET,
        [
            {
                "method": "Recommend",
                "request": request,
                "metadata": app + ([] if token is None else [["authorization", f"Bearer {token}"]]),
            }
            for request, token in calls
        ],
    )


def test_grpc_recommendations_equal_the_http_answers_and_log_their_impressions(
    platform: Platform, client: httpx.Client, grpc_stubs: Path
) -> None:
    bodies: list[dict[str, Any]] = [
        {"user_id": 3},
        {"user_id": 42, "k": 4, "exclude": _ranker().local(42, 2).items},
        {"user_id": 299, "k": 6, "context": {"recent_views": [1, 2, 3]}},
        {"user_id": 10_000},  # unknown user: popular items
        {"user_id": STORED_USER},  # views from the online store
    ]
    calls = [({"model": RANKER, **body}, platform.app_token) for body in bodies]
    answers = over_grpc(platform, grpc_stubs, *calls)
    for body, answer in zip(bodies, answers, strict=True):
        assert answer["code"] == "OK", answer["details"]
        expected = client.post(
            f"/v1/recommend/{RANKER}", json=body, headers=platform.headers()
        ).json()
        got = answer["response"]
        assert got["model"] == expected["model"] == RANKER
        assert int(got["version"]) == expected["version"] == _ranker().version
        assert [int(i["item_id"]) for i in got["items"]] == [
            i["item_id"] for i in expected["items"]
        ]
        assert [i["score"] for i in got["items"]] == pytest.approx(
            [i["score"] for i in expected["items"]], rel=1e-6
        )
        assert len(got["items"]) == body.get("k", 10)
        assert not {int(i["item_id"]) for i in got["items"]} & set(body.get("exclude", []))
        assert got["request_id"] == answer["trailing"]["request_id"] != expected["request_id"]
        assert got["recent_views_source"] == expected["recent_views_source"]
        assert got["category_activity_source"] == expected["category_activity_source"]
        assert "fallback" not in got and expected["fallback"] is None
    assert answers[-1]["response"]["recent_views_source"] == "store"
    assert answers[-1]["response"]["category_activity_source"] == "store"
    rid = answers[1]["response"]["request_id"]
    rows = _impressions(platform, rid)
    assert [int(r["item_id"]) for r in rows] == [
        int(i["item_id"]) for i in answers[1]["response"]["items"]
    ]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("case", "code", "error"),
    [
        ("no_token", "UNAUTHENTICATED", "unauthenticated"),
        ("not_allowed", "PERMISSION_DENIED", "permission_denied"),
        ("unknown_ranker", "NOT_FOUND", "not_found"),
        ("k_zero", "INVALID_ARGUMENT", "invalid_input"),
        ("k_over_bound", "INVALID_ARGUMENT", "invalid_input"),
        ("no_model", "INVALID_ARGUMENT", "invalid_input"),
    ],
)
def test_grpc_refuses_what_http_refuses(
    platform: Platform, grpc_stubs: Path, case: str, code: str, error: str
) -> None:
    request: dict[str, Any] = {"model": RANKER, "user_id": 1}
    token: str | None = platform.app_token
    if case == "no_token":
        token = None
    elif case == "not_allowed":
        token = platform.analyst
    elif case == "unknown_ranker":
        request["model"] = "no_such_ranker"
    elif case == "k_zero":
        request["k"] = 0
    elif case == "k_over_bound":
        request["k"] = 101
    elif case == "no_model":
        del request["model"]
    (answer,) = over_grpc(platform, grpc_stubs, (request, token))
    assert answer["code"] == code, answer
    assert answer["trailing"]["entai-error-code"] == error
    assert answer["trailing"]["request_id"]
