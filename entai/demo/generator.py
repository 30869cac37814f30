"""Seeded generator of realistic e-commerce events with a known ground truth.

Users have latent category preferences and activity levels; products belong to
categories, have prices and an *appeal* (how often a product is picked among its
category's products: a few popular items and a long tail, drawn from a random stream
of their own so the rest of the world does not change with it). Each (user,
category) pair emits views as a Poisson process; a view becomes a cart with a
pair-specific probability and a cart becomes a purchase with a user-specific
probability. Because the generator knows every rate, it can give the *oracle*
probability that a user buys in a category within a horizon, which bounds what any
model can reach on the data. :meth:`EcommerceWorld.products` is the catalogue.

:meth:`EcommerceWorld.shifted` continues a world after its history with a market
change (:class:`Shift`: one category's prices cut and its popularity up), the drift
the demo's monitoring act injects; the shifted world's oracle knows the new rates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["CATEGORIES", "EcommerceWorld", "Shift", "WorldConfig"]

_APPEAL_STREAM = 17  # the appeal's own random stream: np.random.default_rng([seed, 17])
_APPEAL_SIGMA = 1.0

CATEGORIES = (
    "electronics",
    "books",
    "fashion",
    "home",
    "sports",
    "toys",
    "beauty",
    "grocery",
)
_PRICE_MEDIAN = {
    "electronics": 180.0,
    "books": 18.0,
    "fashion": 45.0,
    "home": 70.0,
    "sports": 55.0,
    "toys": 30.0,
    "beauty": 25.0,
    "grocery": 12.0,
}


@dataclass(frozen=True, kw_only=True)
class WorldConfig:
    """Size and shape of the synthetic world.

    Attributes:
        n_users: Number of users.
        n_products: Number of products, spread over the categories.
        days: Length of the event history.
        start: First instant of the history (UTC).
        seed: Seed of every random draw.
        views_per_day: Mean views per user per day, before preferences.
    """

    n_users: int = 2_000
    n_products: int = 400
    days: int = 60
    start: datetime = field(default_factory=lambda: datetime(2026, 9, 1, tzinfo=UTC))
    seed: int = 7
    views_per_day: float = 1.2


@dataclass(frozen=True, kw_only=True)
class Shift:
    """A market change in one category, e.g. a price cut that draws shoppers.

    Attributes:
        category: The category that changes.
        popularity: Multiplier of every user's view rate in the category.
        price: Multiplier of the category's prices.
        price_elasticity: Cart rates in the category scale by ``price ** -elasticity``
            (capped at 0.9): cheaper goods get carted more often.
    """

    category: str = "electronics"
    popularity: float = 3.0
    price: float = 0.6
    price_elasticity: float = 1.0

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; choose from {CATEGORIES}")
        if self.popularity <= 0 or self.price <= 0 or self.price_elasticity < 0:
            raise ValueError("popularity and price must be > 0, price_elasticity >= 0")


class EcommerceWorld:
    """A seeded world of users, products and their latent behaviour."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n_cat = len(CATEGORIES)
        self.preferences = rng.dirichlet(np.full(n_cat, 0.6), size=cfg.n_users)
        self.activity = rng.lognormal(mean=0.0, sigma=0.7, size=cfg.n_users)
        self.cart_rate = rng.beta(2.0, 8.0, size=(cfg.n_users, n_cat))
        self.buy_rate = rng.beta(3.0, 4.0, size=cfg.n_users)
        self.product_category = rng.integers(0, n_cat, size=cfg.n_products)
        medians = np.array([_PRICE_MEDIAN[c] for c in CATEGORIES])
        self.product_price = np.round(
            medians[self.product_category] * rng.lognormal(0.0, 0.35, cfg.n_products), 2
        )
        appeal_rng = np.random.default_rng([cfg.seed, _APPEAL_STREAM])
        self.product_appeal = appeal_rng.lognormal(0.0, _APPEAL_SIGMA, cfg.n_products)
        self._rng = rng

    def products(self) -> pd.DataFrame:
        """The product catalogue: product_id, category, price and appeal (the share of
        its category's views a product draws), one row per product, by id."""
        cats = self.product_category
        totals = np.bincount(cats, weights=self.product_appeal, minlength=len(CATEGORIES))
        return pd.DataFrame(
            {
                "product_id": np.arange(self.config.n_products, dtype=np.int64),
                "category": np.asarray(CATEGORIES, dtype=object)[cats].astype(str),
                "price": self.product_price.astype(np.float64),
                "appeal": self.product_appeal / totals[cats],
            }
        )

    def shifted(self, shift: Shift, *, days: int) -> EcommerceWorld:
        """The same users and products over the ``days`` after this history, shifted.

        The new world starts where this one ends and draws its events from a seed of
        its own (so event ids do not collide); its rates, prices and oracle include
        ``shift``. This world is not changed.
        """
        c = CATEGORIES.index(shift.category)
        world = copy.copy(self)
        cfg = self.config
        world.config = replace(
            cfg, start=cfg.start + timedelta(days=cfg.days), days=days, seed=cfg.seed + 1
        )
        world.preferences = self.preferences.copy()
        world.preferences[:, c] *= shift.popularity
        world.cart_rate = self.cart_rate.copy()
        world.cart_rate[:, c] = np.minimum(
            world.cart_rate[:, c] * shift.price**-shift.price_elasticity, 0.9
        )
        world.product_price = self.product_price.copy()
        in_category = self.product_category == c
        world.product_price[in_category] = np.round(
            self.product_price[in_category] * shift.price, 2
        )
        world._rng = np.random.default_rng(world.config.seed)
        return world

    def view_rate(self) -> np.ndarray:
        """Views per day for every (user, category) pair."""
        return self.config.views_per_day * self.activity[:, None] * self.preferences

    def purchase_rate(self) -> np.ndarray:
        """Purchases per day for every (user, category) pair."""
        return self.view_rate() * self.cart_rate * self.buy_rate[:, None]

    def events(self) -> pd.DataFrame:
        """All events of the history, sorted by time.

        Columns: event_id, user_id, user_email, product_id, category, price,
        event_type (view | cart | purchase), event_timestamp (UTC), search_query
        (free text; about 1% contain a phone number).
        """
        cfg = self.config
        rng = self._rng
        rates = self.view_rate() * cfg.days
        counts = rng.poisson(rates)
        users, cats = np.nonzero(counts)
        n = counts[users, cats]
        v_user = np.repeat(users, n)
        v_cat = np.repeat(cats, n)
        offsets = rng.uniform(0.0, cfg.days * 86_400.0, size=v_user.size)
        carted = rng.random(v_user.size) < self.cart_rate[v_user, v_cat]
        bought = carted & (rng.random(v_user.size) < self.buy_rate[v_user])
        products = self._pick_products(v_cat)

        def frame(mask: np.ndarray, kind: str, delay_s: float) -> pd.DataFrame:
            ts = offsets[mask] + delay_s * rng.random(int(mask.sum()))
            return pd.DataFrame(
                {
                    "user_id": v_user[mask].astype(np.int64),
                    "product_id": products[mask].astype(np.int64),
                    "category": np.asarray(CATEGORIES, dtype=object)[v_cat[mask]],
                    "price": self.product_price[products[mask]],
                    "event_type": kind,
                    "offset_s": ts,
                }
            )

        every = np.ones(v_user.size, dtype=bool)
        out = pd.concat(
            [
                frame(every, "view", 0.0),
                frame(carted, "cart", 600.0),
                frame(bought, "purchase", 1800.0),
            ],
            ignore_index=True,
        )
        out = out[out["offset_s"] < cfg.days * 86_400.0].sort_values("offset_s", kind="stable")
        stamps = pd.Timestamp(cfg.start) + pd.to_timedelta(out["offset_s"], unit="s")
        out["event_timestamp"] = stamps.dt.floor("us").astype("datetime64[us, UTC]")
        out = out.drop(columns="offset_s").reset_index(drop=True)
        ids = pd.Series(np.arange(len(out)), dtype=np.int64).astype(str).str.zfill(8)
        out.insert(0, "event_id", f"ev-{cfg.seed}-" + ids)
        out.insert(2, "user_email", "user" + out["user_id"].astype(str) + "@example.com")
        out["search_query"] = self._queries(out["category"])
        out["category"] = out["category"].astype(str)
        out["event_type"] = out["event_type"].astype(str)
        return out

    def _queries(self, categories: pd.Series) -> pd.Series:
        """Free-text search queries; about 1% carry contact details (PII to scrub)."""
        rng = self._rng
        base = "best " + categories + " deals"
        pii = rng.random(len(categories)) < 0.01
        phone = pd.Series(rng.integers(200, 999, len(categories)), index=categories.index)
        contact = " call me at 415-555-" + phone.astype(str).str.zfill(4)
        return base.where(~pii, base + contact)

    def _pick_products(self, categories: np.ndarray) -> np.ndarray:
        """A product of the given category for every view, drawn by the products' appeal.

        One uniform draw per view is mapped through the category's cumulative appeal,
        so the world's random stream does not depend on the appeal.
        """
        order = np.lexsort((np.arange(self.product_category.size), self.product_category))
        sorted_cats = self.product_category[order]
        appeal = self.product_appeal[order]
        cum = np.cumsum(appeal)
        lo = np.searchsorted(sorted_cats, categories, side="left")
        hi = np.searchsorted(sorted_cats, categories, side="right")
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        top = cum[np.maximum(hi - 1, 0)]
        target = base + self._rng.random(categories.size) * (top - base)
        pick = np.searchsorted(cum, target, side="right")
        pick = np.clip(pick, lo, np.maximum(hi - 1, lo))
        picked: np.ndarray = order[np.minimum(pick, len(order) - 1)]
        return picked

    def label_rows(
        self, events: pd.DataFrame, cutoffs: list[datetime], horizon: timedelta
    ) -> pd.DataFrame:
        """Entity rows (user, category, cutoff) with the realised label and the oracle score.

        ``label`` is 1 when the user purchased in the category within ``(cutoff,
        cutoff + horizon]``; ``oracle`` is the true probability of that event.
        """
        n_users, n_cat = self.config.n_users, len(CATEGORIES)
        grid_user = np.tile(np.repeat(np.arange(n_users), n_cat), len(cutoffs))
        grid_cat = np.tile(np.tile(np.arange(n_cat), n_users), len(cutoffs))
        grid_ts = np.repeat(np.array([pd.Timestamp(c) for c in cutoffs]), n_users * n_cat)
        rows = pd.DataFrame(
            {
                "user_id": grid_user.astype(np.int64),
                "category": np.asarray(CATEGORIES, dtype=object)[grid_cat].astype(str),
                "event_timestamp": pd.to_datetime(grid_ts, utc=True),
            }
        )
        buys = events.loc[
            events["event_type"] == "purchase", ["user_id", "category", "event_timestamp"]
        ]
        merged = rows.reset_index().merge(
            buys, on=["user_id", "category"], how="left", suffixes=("", "_buy")
        )
        hit = (merged["event_timestamp_buy"] > merged["event_timestamp"]) & (
            merged["event_timestamp_buy"] <= merged["event_timestamp"] + horizon
        )
        rows["label"] = (
            hit.groupby(merged["index"])
            .any()
            .reindex(rows.index, fill_value=False)
            .astype(np.int64)
        )
        rate = self.purchase_rate()[grid_user, grid_cat]
        rows["oracle"] = 1.0 - np.exp(-rate * horizon.total_seconds() / 86_400.0)
        return rows
