"""The demo's recommender: a product ranker trained, gated, promoted, then asked over HTTP.

The ranker learns from the same generated events the propensity model does
(examples at cutoffs every few days, see :mod:`entai.pipelines.training`), is
compared with the popularity baseline on held-out time, registered with its model
card and the interaction index serving needs, and promoted to ``champion`` through
the registry's gates (``demo`` registers it, ``demo-lead`` approves it: four eyes).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from entai.actors.services import Services
from entai.demo.api import post_json
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.pipelines.training import RankerConfig

__all__ = [
    "CATEGORY_ACTIVITY_FEATURE",
    "RANKER_NAME",
    "RECENT_VIEWS_FEATURE",
    "ranker_config",
    "recommend_over_http",
    "train_and_promote_ranker",
]

RANKER_NAME = "product_ranker"
RECENT_VIEWS_FEATURE = "user_recent_views:recent_product_ids"
"""The list feature the serving ranker reads a user's recent views from (the demo's
stream view, :data:`entai.demo.features.user_recent_views`)."""
CATEGORY_ACTIVITY_FEATURE = "product_category_affinity:category_activity_30d"
"""The feature the serving ranker reads a user's activity per category from (the
demo's stream view, :data:`entai.demo.features.product_category_affinity`: the
definition the ranker's index was trained with)."""


def ranker_config() -> RankerConfig:
    """The demo's ranker: cutoffs every 4 days from day 14, 300 users each, 7-day horizon."""
    from entai.pipelines.training import RankerConfig  # Ray and XGBoost: not at CLI start-up

    return RankerConfig(model_name=RANKER_NAME, cutoff_every_days=4, users_per_cutoff=300)


def train_and_promote_ranker(
    settings: EntaiSettings,
    events: pd.DataFrame,
    catalogue: pd.DataFrame,
    *,
    start: datetime,
    end: datetime,
    trainer_token: str,
    approver_token: str,
) -> dict[str, Any]:
    """Train the ranker on Ray, evaluate it against popularity, register and promote it
    (registered with ``trainer_token``, approved with ``approver_token``).

    Returns:
        Version, run id, held-out metrics of the model and of the baseline, and the
        number of training rows.
    """
    from entai.pipelines.training import register_ranker, train_ranker

    config = ranker_config()
    trained = train_ranker(settings, events, catalogue, start=start, end=end, config=config)
    info, logged = register_ranker(
        settings,
        trained,
        Services.of(settings).registry(),
        token=trainer_token,
        approver_token=approver_token,
    )
    k = config.k
    m = trained.metrics
    return {
        "name": RANKER_NAME,
        "version": info.version,
        "run_id": logged.run_id,
        "k": k,
        "training_rows": len(trained.train.rows),
        "held_out_requests": int(m["held_out_requests"]),
        "valid_auc": m["valid_auc"],
        "model": {n: m[f"{n}_at_{k}"] for n in ("ndcg", "precision", "recall")},
        "popularity": {n: m[f"popularity_{n}_at_{k}"] for n in ("ndcg", "precision", "recall")},
    }


def recommend_over_http(
    url: str, token: str, user: int, *, k: int = 5, timeout_s: float = 30.0
) -> dict[str, Any]:
    """One user's recommendations from ``POST /v1/recommend/{ranker}``.

    Raises:
        ServiceUnavailableError: the platform did not answer 200.
    """
    body = {"user_id": user, "k": k}
    answer = post_json(url, f"/v1/recommend/{RANKER_NAME}", token, body, timeout_s=timeout_s)
    return {"user_id": user, **answer}
