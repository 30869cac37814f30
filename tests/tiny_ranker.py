"""A ranker world small enough to know every answer: eight products in three
categories, two users' views, and a model that scores by price.

User 1 viewed 0, 1, 4 (in that order); user 2 viewed 2, 5 and 7 on one day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from entai.deployments.model_runtime import LoadedModel
from entai.shared.recommend import RANKING_FEATURES, InteractionIndex

T0 = datetime(2026, 9, 1, tzinfo=UTC)
CATALOGUE = pd.DataFrame(
    {
        "product_id": list(range(8)),
        "category": ["books"] * 4 + ["toys"] * 3 + ["home"],
        "price": [10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 30.0],
    }
)
EVENTS = pd.DataFrame(
    [(1, item, "view", pd.Timestamp(T0 + timedelta(hours=h))) for h, item in enumerate([0, 1, 4])]
    + [(2, item, "view", pd.Timestamp(T0 + timedelta(hours=5))) for item in (2, 5, 7)],
    columns=["user_id", "product_id", "event_type", "event_timestamp"],
)
INDEX = InteractionIndex.from_events(EVENTS, CATALOGUE, as_of=T0 + timedelta(days=1))
PRICE = RANKING_FEATURES.index("price")


def by_price(version: int = 1) -> LoadedModel:
    """A model that scores the price: the order of an answer is known in advance."""
    return LoadedModel(version, RANKING_FEATURES, lambda m: m[:, PRICE])
