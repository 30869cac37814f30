"""A ranker for the platforms that serve recommendations (:mod:`test_serve_recommend`,
:mod:`test_live_loop`): trained on Ray over a small generated world, registered with
the trainer's token and promoted to ``champion`` through the registry's gates with the
approver's, and what that champion answers when called directly (no Serve)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from entai.demo.generator import EcommerceWorld, WorldConfig

if TYPE_CHECKING:
    from test_serve_http import ModelTokens

    from entai.actors.models import ModelVersionInfo
    from entai.deployments.recommend import Recommendation
    from entai.pipelines.training import TrainedRanker

__all__ = ["WORLD", "GatedRanker", "train_gated_ranker"]

WORLD = WorldConfig(n_users=300, n_products=80, days=40, seed=11)


@dataclass(frozen=True)
class GatedRanker:
    """The trained ranker and its registered (champion) version."""

    trained: TrainedRanker
    info: ModelVersionInfo

    @property
    def version(self) -> int:
        return self.info.version

    def local(
        self,
        user: int,
        k: int = 10,
        exclude: Sequence[int] = (),
        session: Sequence[int] = (),
        history: Sequence[int] | None = None,
        activity: Mapping[str, float] | None = None,
    ) -> Recommendation:
        """What the champion answers ``user``, scored in this process (``history`` and
        ``activity``: the user's views and category activity from the online store, in
        place of the index's)."""
        from entai.deployments.model_runtime import xgboost_model
        from entai.deployments.recommend import recommend

        model = xgboost_model(self.version, self.trained.outcome.booster)
        return recommend(
            model,
            self.trained.index,
            user,
            k=k,
            exclude=exclude,
            session=session,
            history=history,
            activity=activity,
        )


def train_gated_ranker(settings: Any, name: str, tokens: ModelTokens) -> GatedRanker:
    """Train ranker ``name`` on :data:`WORLD`, register it and promote it to champion."""
    from entai.actors.services import Services
    from entai.pipelines.training import RankerConfig, register_ranker, train_ranker

    world = EcommerceWorld(WORLD)
    trained = train_ranker(
        settings,
        world.events(),
        world.products(),
        start=WORLD.start,
        end=WORLD.start + timedelta(days=WORLD.days),
        config=RankerConfig(model_name=name, users_per_cutoff=120, num_boost_round=40),
    )
    info, _ = register_ranker(
        settings,
        trained,
        Services.of(settings).registry(),
        token=tokens.trainer,
        approver_token=tokens.approver,
    )
    return GatedRanker(trained=trained, info=info)
