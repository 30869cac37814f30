"""The demo's live act, over HTTP against the running platform.

Three scenes, all through the public API only:

* **live views**: a user views products now (``POST /v1/events``); the platform's stream
  workers land the events and update the user's features by themselves, and the
  freshness is the time from the 202 to the new value read over HTTP;
* **a burst of views**: one user views a few products of a category they have hardly
  visited (``POST /v1/events``); the stream workers land the events and update the
  user's ``user_recent_views`` online; the user's next recommendations are asked
  again, with no context, so whatever changes comes from the store;
* **shoppers**: a sample of users ask for recommendations and click and buy what they
  are shown as the generated world says they would (a click with the user's
  preference for the item's category, a purchase after it with their cart and buy
  rates); the clicks and purchases go back through ``POST /v1/feedback`` and the
  ranker's live CTR, precision, recall and NDCG at k are read from
  ``GET /v1/monitoring/{ranker}``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from entai.demo.api import bearer, post_json
from entai.demo.generator import CATEGORIES, EcommerceWorld
from entai.demo.ranker import RANKER_NAME, RECENT_VIEWS_FEATURE, recommend_over_http
from entai.shared.core import ServiceUnavailableError

__all__ = ["BURST_VIEWS", "LIVE_VIEWS", "SHOPPERS", "burst_of_views", "live_views", "shoppers"]

LIVE_VIEWS = 5
"""Views the first scene's user makes."""
BURST_VIEWS = 3
"""Views in the burst (the demo's ``user_recent_views`` keeps the last 10)."""
SHOPPERS = 60
"""Users who ask for recommendations and react to them."""
SHOWN = 5
"""Items shown to the burst's user (the summary's before/after table)."""
_K = 10
_TIMEOUT_S = 60.0
_SEED = 23

T = TypeVar("T")


def _wait(what: str, probe: Callable[[], T | None], timeout_s: float = _TIMEOUT_S) -> T:
    """Poll ``probe`` until it returns something (not None).

    Raises:
        ServiceUnavailableError: it did not within ``timeout_s``.
    """
    deadline = time.perf_counter() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.perf_counter() > deadline:
            raise ServiceUnavailableError(
                f"{what} did not happen within {timeout_s:.0f} s (see `entai status`)"
            )
        time.sleep(0.1)


def live_views(url: str, token: str, events: pd.DataFrame) -> dict[str, Any]:
    """The latest event's user views :data:`LIVE_VIEWS` products now, through
    ``POST /v1/events``; returns their ``user_views_7d`` before and after, and the
    seconds from the 202 to the new value read over ``POST /v1/features/online``.

    Raises:
        ServiceUnavailableError: the events were not all accepted, or the user's features
            did not change within the timeout.
    """

    template = events.sort_values("event_timestamp").iloc[-1]
    user = int(template["user_id"])
    now = datetime.now(UTC)
    # Six digits from the clock: the contract wants "ev-<digits>-<digits>", and a longer
    # digit run (a millisecond stamp has 13) can read as a card or phone number to the
    # undeclared-PII scan, which would quarantine every live event.
    stamp = 100_000 + int(now.timestamp()) % 900_000
    payloads = [
        {
            **{k: _plain(v) for k, v in template.items()},
            "event_id": f"ev-{stamp}-{i}",
            "event_type": "view",
            "event_timestamp": now.isoformat(),
        }
        for i in range(LIVE_VIEWS)
    ]
    read = {"features": ["user_stats:user_views_7d"], "entities": {"user_id": [user]}}

    def views() -> tuple[float | None, str | None]:
        result = post_json(url, "/v1/features/online", token, read, timeout_s=10)["results"][0]
        return result["values"][0], result["event_timestamps"][0]

    before = views()
    accepted_at = _post_events(url, token, payloads, "live views")

    def changed() -> tuple[float | None, str | None] | None:
        now_read = views()
        return now_read if now_read != before else None

    after = _wait(f"the stream workers' update of user {user}'s features", changed)
    return {
        "user_id": user,
        "events": len(payloads),
        "user_views_7d": {"before": before[0], "after": after[0]},
        "freshness_s": round(time.perf_counter() - accepted_at, 3),
    }


def _post_events(url: str, token: str, payloads: list[dict[str, Any]], what: str) -> float:
    """``POST /v1/events`` of ``payloads``; the ``perf_counter`` time of its 202.

    Raises:
        ServiceUnavailableError: another answer, or not every event accepted (the first
            rejected one's errors named).
    """
    receipt = post_json(
        url, "/v1/events", token, {"source": "events", "events": payloads}, expect=202
    )
    accepted_at = time.perf_counter()
    if receipt.get("accepted") != len(payloads):
        errors = receipt.get("errors") or [{}]
        raise ServiceUnavailableError(
            f"POST /v1/events accepted {receipt.get('accepted')} of {len(payloads)} {what}: "
            f"{errors[0].get('errors')}",
            details={"accepted": receipt.get("accepted"), "rejected": receipt.get("rejected")},
        )
    return accepted_at


def _plain(value: Any) -> Any:
    """A JSON value of a frame cell (numpy scalars and timestamps included)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return None if pd.isna(value) else value


def _recent_views(url: str, token: str, user: int) -> list[int]:
    read = {"features": [RECENT_VIEWS_FEATURE], "entities": {"user_id": [user]}}
    value = post_json(url, "/v1/features/online", token, read)["results"][0]["values"][0]
    return [int(v) for v in value or []]


def _new_category(events: pd.DataFrame, user: int) -> str:
    """The category ``user`` visited least in the history (ties: by name)."""
    visits = events.loc[events["user_id"] == user, "category"].value_counts()
    return min(CATEGORIES, key=lambda c: (int(visits.get(c, 0)), c))


def _labelled(items: list[dict[str, Any]], category_of: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {"item_id": int(i["item_id"]), "score": i["score"], "category": category_of[i["item_id"]]}
        for i in items
    ]


def burst_of_views(
    url: str, token: str, world: EcommerceWorld, events: pd.DataFrame, user: int
) -> dict[str, Any]:
    """``user``'s recommendations before and after they view :data:`BURST_VIEWS` of the
    most appealing products of a category new to them.

    Returns:
        The category, the viewed products (most recent first), the seconds from the
        202 to the views being readable online, the items (id, score, category)
        recommended before and after, and where the service took the user's recent
        views from after the burst (``store``). The top items need not change: the
        ranker may still prefer the user's usual categories.

    Raises:
        ServiceUnavailableError: a request failed, or the views never showed online.
    """

    products = world.products()
    category_of = dict(zip(products["product_id"].tolist(), products["category"], strict=True))
    category = _new_category(events, user)
    chosen = products[products["category"] == category].nlargest(BURST_VIEWS, "appeal")
    viewed = [int(p) for p in chosen["product_id"]]
    before = recommend_over_http(url, token, user, k=SHOWN)
    template = events[events["user_id"] == user].iloc[-1]
    # Dated from now on, a millisecond apart: after every view the user made before
    # (the demo's live views were dated a moment ago), so the burst is their newest.
    now = datetime.now(UTC)
    tag = uuid.uuid4().int % 900_000 + 100_000  # six digits: see flow._live_events
    payloads = [
        {
            "event_id": f"ev-{tag}-{i}",
            "user_id": user,
            "user_email": str(template["user_email"]),
            "product_id": product,
            "category": category,
            "price": float(world.product_price[product]),
            "event_type": "view",
            "event_timestamp": (now + timedelta(milliseconds=i)).isoformat(),
            "search_query": f"best {category} deals",
        }
        for i, product in enumerate(viewed)
    ]
    accepted_at = _post_events(url, token, payloads, "burst views")
    newest_first = viewed[::-1]
    _wait(
        f"user {user}'s burst of views in user_recent_views",
        lambda: True if _recent_views(url, token, user)[:BURST_VIEWS] == newest_first else None,
    )
    freshness = time.perf_counter() - accepted_at
    after = recommend_over_http(url, token, user, k=SHOWN)
    return {
        "user_id": user,
        "category": category,
        "viewed": newest_first,
        "freshness_s": round(freshness, 3),
        "version": after["version"],
        "source": after.get("recent_views_source"),
        "before": _labelled(before["items"], category_of),
        "after": _labelled(after["items"], category_of),
    }


def _reactions(
    world: EcommerceWorld, user: int, items: list[int], rng: np.random.Generator
) -> list[tuple[int, str]]:
    """What ``user`` does with the items shown: (item, "click" | "purchase") pairs."""
    out: list[tuple[int, str]] = []
    for item in items:
        c = int(world.product_category[item])
        if rng.random() < world.preferences[user, c]:
            bought = rng.random() < world.cart_rate[user, c] * world.buy_rate[user]
            out.append((item, "purchase" if bought else "click"))
    return out


def shoppers(url: str, token: str, world: EcommerceWorld, *, n: int = SHOPPERS) -> dict[str, Any]:
    """``n`` users ask for :data:`_K` recommendations, react to them, and the reactions go
    back as feedback; the ranker's live quality is then read from its monitoring report.

    Returns:
        Requests, clicks and purchases sent, and the monitoring windows holding them
        (one, unless the shoppers straddled a window's end).

    Raises:
        ServiceUnavailableError: a request failed, or the window never showed them.
    """
    import httpx

    rng = np.random.default_rng(_SEED)
    users = rng.choice(world.config.n_users, size=min(n, world.config.n_users), replace=False)
    interactions: list[dict[str, Any]] = []
    started_at = time.time()
    for user in users.tolist():
        answer = recommend_over_http(url, token, user, k=_K)
        shown = [int(i["item_id"]) for i in answer["items"]]
        interactions += [
            {"request_id": answer["request_id"], "item_id": item, "kind": kind}
            for item, kind in _reactions(world, user, shown, rng)
        ]
    if interactions:
        feedback = {"model": RANKER_NAME, "interactions": interactions}
        post_json(url, "/v1/feedback", token, feedback)
    asked_at = time.time()

    def windows() -> list[dict[str, Any]] | None:
        """The monitoring windows the shoppers' requests fell in (usually one), once every
        shopper's impressions are flushed and every reaction joined to one of them.

        The replicas flush their impression logs on their own clocks, so the windows may
        hold the feedback before the last impressions it marks: counting requests alone
        (other stages' requests share the window) would read the windows too early."""
        answer = httpx.get(f"{url}/v1/monitoring/{RANKER_NAME}", headers=bearer(token), timeout=30)
        answer.raise_for_status()
        found: list[dict[str, Any]] = [
            w
            for w in answer.json()["windows"]
            if w["start_s"] <= asked_at and w["end_s"] > started_at
        ]
        requests = sum(w["requests"] for w in found)
        clicked = sum(w["clicked"] for w in found)
        return found if requests >= len(users) and clicked >= len(interactions) else None

    live = _wait("the shoppers' requests in the ranker's monitoring windows", windows)
    kinds = [i["kind"] for i in interactions]
    return {
        "requests": len(users),
        "clicks": kinds.count("click"),
        "purchases": kinds.count("purchase"),
        "windows": live,
    }
