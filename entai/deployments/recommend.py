"""Recommendations in a serving replica: the ranker's champion and its interaction index.

A :class:`RankerRuntime` follows a ranker's ``champion`` alias like the scoring
runtime follows a model's (:class:`entai.deployments.model_runtime.ModelRuntime`:
loads off the request path, atomic swaps), and keeps, next to each loaded version,
the interaction index its training run shipped (``interaction_index.json``).
:func:`recommend` is one request: candidates from the index (excluded items never),
the ranker's features, scores, the top ``k``. A user the index has no candidates for
gets the most popular items. The user's recent views are the request's session views
before either the index's or, when the ingress read them from the online store
(:mod:`entai.deployments.stored_user`), the stored ones (``history``); likewise the
user's category activity is the index's or the stored one (``activity``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from entai.deployments.model_runtime import (
    AliasWatcher,
    LoadedModel,
    ModelRuntime,
    VersionsHook,
    xgboost_model,
)
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.recommend import (
    INDEX_ARTIFACT,
    RANKING_FEATURES,
    CandidatePolicy,
    InteractionIndex,
    rank_items,
)

__all__ = [
    "RankerLoader",
    "RankerRuntime",
    "Recommendation",
    "load_mlflow_ranker",
    "recommend",
]

RankerLoader = Callable[[str, int], tuple[LoadedModel, InteractionIndex]]
"""``loader(name, version)`` -> the version's model and its interaction index."""


@dataclass(frozen=True)
class Recommendation:
    """One answer.

    Attributes:
        version: The ranker version that scored.
        items: Item ids, best first (at most ``k``).
        scores: The ranker's score of each item.
        features: The ranker's inputs of each returned item (rows x RANKING_FEATURES).
        candidates: How many candidates were scored.
    """

    version: int
    items: list[int]
    scores: list[float]
    features: np.ndarray
    candidates: int


def recommend(
    model: LoadedModel,
    index: InteractionIndex,
    user: int,
    *,
    k: int,
    exclude: Sequence[int] = (),
    session: Sequence[int] = (),
    history: Sequence[int] | None = None,
    activity: Mapping[str, float] | None = None,
    policy: CandidatePolicy | None = None,
) -> Recommendation:
    """Rank ``user``'s candidates with ``model`` and keep the best ``k``.

    ``session``: views newest first, the most recent; ``history``: the user's views
    before them from the online store, in place of the index's (None: the index's);
    ``activity``: the user's activity per category from the online store, in place of
    the index's (None: the index's).

    Raises:
        InvalidInputError: (from the model) inputs it cannot score.
        ModelOutputInvalidError: the model answered a score that is not finite.
    """
    items = index.candidates(
        user, policy=policy, exclude=exclude, session=session, history=history, activity=activity
    )
    if len(items) < k:
        items += index.popular(k - len(items), exclude=[*exclude, *items])
    if not items:
        return Recommendation(model.version, [], [], np.empty((0, len(RANKING_FEATURES))), 0)
    matrix = index.features(user, items, session=session, history=history, activity=activity)
    scores = model.score(RANKING_FEATURES, matrix)
    top = rank_items(items, scores, k)
    position = {item: row for row, item in enumerate(items)}
    chosen = [item for item, _ in top]
    return Recommendation(
        version=model.version,
        items=chosen,
        scores=[score for _, score in top],
        features=matrix[[position[i] for i in chosen]],
        candidates=len(items),
    )


def load_mlflow_ranker(name: str, version: int) -> tuple[LoadedModel, InteractionIndex]:
    """A ranker version from the (configured) MLflow registry, with its run's index.

    The booster predicts on one thread: a request scores tens of rows, and OpenMP
    threads cost more than they give there (measured 38 ms per request with the
    default threads on a loaded 2-core machine against 1.5 ms with one).

    Raises:
        InvalidInputError: the version is not an XGBoost model.
    """
    import mlflow
    import mlflow.xgboost

    flavors = mlflow.models.get_model_info(f"models:/{name}/{version}").flavors
    if "xgboost" not in flavors:
        raise InvalidInputError(
            f"ranker {name!r} version {version} is not an XGBoost model",
            details={"model": name, "version": version, "flavors": sorted(flavors)},
        )
    booster = mlflow.xgboost.load_model(f"models:/{name}/{version}")
    booster.set_param({"nthread": 1})
    model = xgboost_model(version, booster)
    run_id = mlflow.MlflowClient().get_model_version(name, str(version)).run_id
    data = mlflow.artifacts.load_dict(f"runs:/{run_id}/{INDEX_ARTIFACT}")
    return model, InteractionIndex.from_dict(data)


class RankerRuntime:
    """The ranker's ``champion``, hot-swapped, with the interaction index of each version.

    Indexes of the serving version and the one it replaced are kept (a rollback
    needs no reload of the index); older ones are let go at the next load.

    Args:
        name: The ranker's registered name.
        watcher: Source of the alias map and its changes.
        loader: ``loader(name, version)`` -> (model, index).
        on_versions: Hook after every poll (see ModelRuntime).
    """

    def __init__(
        self,
        name: str,
        watcher: AliasWatcher,
        loader: RankerLoader,
        *,
        on_versions: VersionsHook | None = None,
    ) -> None:
        self.name = name
        self._loader = loader
        self._lock = threading.Lock()
        self._indexes: dict[int, InteractionIndex] = {}
        self._runtime = ModelRuntime(
            name, watcher, self._load, aliases=("champion",), on_versions=on_versions
        )

    def _load(self, name: str, version: int) -> LoadedModel:
        model, index = self._loader(name, version)
        with self._lock:
            live = {m.version for m in self._runtime_models().values()}
            self._indexes = {v: i for v, i in self._indexes.items() if v in live} | {version: index}
        return model

    def _runtime_models(self) -> Mapping[str, LoadedModel]:
        runtime = getattr(self, "_runtime", None)  # None while the first load runs
        return {} if runtime is None else runtime.snapshot()

    def start(self) -> None:
        """Start following the registry."""
        self._runtime.start()

    def stop(self) -> None:
        """Stop following the registry."""
        self._runtime.stop()

    @property
    def following(self) -> bool:
        """Whether the watch thread is alive."""
        return self._runtime.following

    def versions(self) -> dict[str, int]:
        """Which version serves ``champion`` now."""
        return self._runtime.versions()

    def index(self, version: int) -> InteractionIndex | None:
        """The serving index of a loaded version (None when it is not loaded)."""
        with self._lock:
            return self._indexes.get(version)

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
        """:func:`recommend` with the current champion and its index.

        Raises:
            ServiceUnavailableError: no champion is loaded.
        """
        model, index = self._champion()
        return recommend(
            model,
            index,
            user,
            k=k,
            exclude=exclude,
            session=session,
            history=history,
            activity=activity,
        )

    def categories(self) -> list[str]:
        """The categories of the champion's index (whose activity a request may read).

        Raises:
            ServiceUnavailableError: no champion is loaded.
        """
        _, index = self._champion()
        return index.categories

    def _champion(self) -> tuple[LoadedModel, InteractionIndex]:
        model = self._runtime.snapshot().get("champion")
        index = None if model is None else self._indexes.get(model.version)
        if model is None or index is None:
            raise ServiceUnavailableError(f"ranker {self.name!r} has no champion loaded")
        return model, index
