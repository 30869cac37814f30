"""The demo's live act: how its shoppers react and which category a burst is in.

The HTTP side (the burst through the stream workers, feedback into the monitoring
report) is asserted on a running demo in tests/e2e/test_demo.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from entai.demo.generator import CATEGORIES, EcommerceWorld, WorldConfig
from entai.demo.live import _new_category, _reactions


def _world() -> EcommerceWorld:
    return EcommerceWorld(WorldConfig(n_users=4, n_products=40, days=2))


def test_shoppers_click_only_in_the_categories_they_like() -> None:
    world = _world()
    books = CATEGORIES.index("books")
    world.preferences[0] = 0.0
    world.preferences[0, books] = 1.0
    world.cart_rate[0] = 0.0  # nothing is bought: every reaction is a click
    items = list(range(world.config.n_products))
    reactions = _reactions(world, 0, items, np.random.default_rng(0))
    in_books = [i for i in items if world.product_category[i] == books]
    assert in_books, "the world has no books to click"
    assert reactions == [(i, "click") for i in in_books]


def test_a_shopper_who_always_carts_and_buys_purchases_what_they_click() -> None:
    world = _world()
    world.preferences[1] = 1.0
    world.cart_rate[1] = 1.0
    world.buy_rate[1] = 1.0
    reactions = _reactions(world, 1, [3, 5, 8], np.random.default_rng(0))
    assert reactions == [(3, "purchase"), (5, "purchase"), (8, "purchase")]


def test_reactions_follow_the_preference_rate() -> None:
    world = _world()
    world.preferences[2] = 0.25
    world.cart_rate[2] = 0.0
    items = list(range(world.config.n_products)) * 100
    clicks = len(_reactions(world, 2, items, np.random.default_rng(1)))
    assert 0.22 < clicks / len(items) < 0.28


def test_the_burst_goes_to_the_least_visited_category_ties_by_name() -> None:
    visited = [c for c in CATEGORIES if c not in ("books", "toys")]
    events = pd.DataFrame(
        {
            "user_id": [7] * (2 * len(visited)) + [8],
            "category": visited * 2 + ["books"],
        }
    )
    assert _new_category(events, 7) == min("books", "toys")
    assert _new_category(events, 8) == min(c for c in CATEGORIES if c != "books")
