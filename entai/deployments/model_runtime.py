"""Loaded model versions per alias, hot-swapped when the registry moves an alias.

A :class:`ModelRuntime` holds an immutable snapshot ``{alias: LoadedModel}``. A
background thread long-polls an :class:`AliasWatcher` (the registry actor's
``wait_for_change``); when an alias moves it loads the new version off the request
path (versions already loaded are reused, so a rollback swaps instantly) and then
replaces the snapshot in one assignment. A request takes the snapshot once and
finishes on it, so in-flight requests complete on the version they started with.
After the first load and after every long poll, an optional hook hears which version
serves each alias (the serving app uses it to have the DriftMonitor watch the champion).
A loaded version also carries its explainer (``entai.shared.models``): TreeSHAP for an
XGBoost booster; for a scikit-learn model, linear or sampling Shapley attributions
against a background rebuilt from the version's monitoring reference (the validation
rows' profile that training records), when it has one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import ray

from entai.actors.core import ActorService
from entai.actors.models import ModelRegistry
from entai.shared.core import InvalidInputError, ModelOutputInvalidError, NotFoundError
from entai.shared.models import (
    Attribution,
    Background,
    CompiledTrees,
    Explainer,
    TreeShapExplainer,
    explainer_for,
)
from entai.shared.monitoring import (
    REFERENCE_TAG,
    MonitoringReference,
    NumericColumnProfile,
    column_from_dict,
)

__all__ = [
    "COMPILED_MAX_ROWS",
    "ActorAliasWatcher",
    "AliasWatcher",
    "LoadedModel",
    "ModelRuntime",
    "VersionsHook",
    "background_of_reference",
    "load_mlflow_model",
    "xgboost_model",
]

log = logging.getLogger(__name__)

Loader = Callable[[str, int], "LoadedModel"]

COMPILED_MAX_ROWS = 32
"""Largest request scored by the compiled trees; XGBoost's own batching wins above it."""
VersionsHook = Callable[[Mapping[str, int]], None]

_BACKGROUND_ROWS = 50


class AliasWatcher(Protocol):
    """Where alias changes come from (the ModelRegistry class or its actor)."""

    def subscribe(self, name: str) -> Mapping[str, Any]:
        """``{"revision": int, "aliases": {alias: version}}`` now."""
        ...

    def wait_for_change(
        self, name: str, known_revision: int, timeout_s: float
    ) -> Mapping[str, Any]:
        """The same map once the revision moves past ``known_revision`` (or on timeout)."""
        ...


class ActorAliasWatcher:
    """:class:`AliasWatcher` over the running ModelRegistry service."""

    def __init__(
        self, registry: ActorService[ModelRegistry], *, call_timeout_s: float = 120.0
    ) -> None:
        self._registry = registry
        self._timeout = call_timeout_s

    def subscribe(self, name: str) -> Mapping[str, Any]:
        """The registry's current alias map for ``name``."""
        ref = self._registry.submit(ModelRegistry.subscribe, name)
        result: dict[str, Any] = ray.get(ref, timeout=self._timeout)
        return result

    def wait_for_change(
        self, name: str, known_revision: int, timeout_s: float
    ) -> Mapping[str, Any]:
        """Block in the registry actor until ``name``'s aliases move or time runs out."""
        ref = self._registry.submit(ModelRegistry.wait_for_change, name, known_revision, timeout_s)
        result: dict[str, Any] = ray.get(ref, timeout=timeout_s + self._timeout)
        return result


@dataclass(frozen=True)
class LoadedModel:
    """One model version in memory.

    Attributes:
        version: Registry version number.
        feature_names: Inputs in the model's order.
        predict: Feature matrix (rows x ``feature_names``) -> one score per row.
        explainer: Splits the model's margin into per-feature contributions; None when
            the version cannot be explained (a scikit-learn model without a recorded
            background).
    """

    version: int
    feature_names: tuple[str, ...]
    predict: Callable[[np.ndarray], np.ndarray]
    explainer: Explainer | None = None

    def inputs(
        self, names: tuple[str, ...], matrix: np.ndarray, request_names: Collection[str] = ()
    ) -> np.ndarray:
        """``matrix`` (columns ``names``) reordered to the model's inputs.

        Raises:
            InvalidInputError: a request feature the model does not take, or an input
                the rows lack.
        """
        unknown = sorted(set(request_names) - set(self.feature_names))
        if unknown:
            raise InvalidInputError(
                f"model version {self.version} takes no request feature(s) {unknown}",
                details={
                    "field": f"request_features.{unknown[0]}",
                    "unknown": unknown,
                    "inputs": list(self.feature_names),
                },
            )
        if names != self.feature_names:
            index = {n: i for i, n in enumerate(names)}
            missing = [n for n in self.feature_names if n not in index]
            if missing:
                raise InvalidInputError(
                    f"model version {self.version} needs feature(s) {missing}",
                    details={"field": "request_features", "missing": missing},
                )
            matrix = matrix[:, [index[n] for n in self.feature_names]]
        return matrix

    def score(
        self, names: tuple[str, ...], matrix: np.ndarray, request_names: Collection[str] = ()
    ) -> np.ndarray:
        """Scores for rows whose columns are ``names``, reordered to the model's inputs.

        Args:
            names: The columns of ``matrix``.
            matrix: One row per entity; missing values are NaN.
            request_names: The columns the caller sent as request features; each must
                be one of the model's inputs.

        Raises:
            InvalidInputError: a request feature the model does not take, or an input
                the rows lack, or rows with missing values for a model that cannot
                take them.
            ModelOutputInvalidError: the model answered a score that is not finite.
        """
        matrix = self.inputs(names, matrix, request_names)
        try:
            scores = np.asarray(self.predict(matrix), dtype=np.float64).reshape(-1)
        except ValueError as exc:  # e.g. scikit-learn refusing NaN
            raise self._missing_values(matrix, "score") or exc from exc
        return self.finite(scores)

    def finite(self, scores: np.ndarray) -> np.ndarray:
        """``scores``, once every one is finite.

        Raises:
            ModelOutputInvalidError: the model answered a score that is not finite.
        """
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        if bad:
            log.error(
                "model returned non-finite scores",
                extra={"model_version": self.version, "rows": bad, "of": len(scores)},
            )
            raise ModelOutputInvalidError(
                f"model version {self.version} returned {bad} score(s) that are not finite",
                details={"model_version": self.version, "rows": bad},
            )
        return scores

    def explain(
        self, names: tuple[str, ...], matrix: np.ndarray, request_names: Collection[str] = ()
    ) -> Attribution:
        """Each feature's contribution to each row's margin, in the model's input order.

        Raises:
            InvalidInputError: as :meth:`score`, or the version has no explainer.
        """
        if self.explainer is None:
            raise InvalidInputError(
                f"model version {self.version} cannot be explained: it is not XGBoost and "
                "has no recorded background (train it with `entai train`)",
                details={"field": "model", "model_version": self.version},
            )
        matrix = self.inputs(names, matrix, request_names)
        try:
            return self.explainer.explain(matrix)
        except ValueError as exc:  # e.g. scikit-learn refusing NaN
            raise self._missing_values(matrix, "explain") or exc from exc

    def _missing_values(self, matrix: np.ndarray, what: str) -> InvalidInputError | None:
        """The error naming the inputs with missing values, if any have some."""
        gaps = np.isnan(matrix).any(axis=0) if matrix.size else np.zeros(0, dtype=bool)
        if not gaps.any():
            return None
        absent = [n for n, gap in zip(self.feature_names, gaps, strict=True) if gap]
        return InvalidInputError(
            f"model version {self.version} cannot {what} rows with missing values of {absent}",
            details={"field": "request_features", "missing_values": absent},
        )


def xgboost_model(version: int, booster: Any) -> LoadedModel:
    """An XGBoost ``Booster`` as a LoadedModel: in-place prediction on float32 rows.

    The column count is checked here, once per call, instead of by XGBoost (which asks
    its library for the model's feature count on every prediction). A request of at most
    :data:`COMPILED_MAX_ROWS` rows is scored by the booster's trees compiled to numpy
    (:class:`~entai.shared.models.CompiledTrees`, a quarter of ``inplace_predict``'s
    CPU for one row) when they compile; larger ones, and boosters that do not compile,
    by XGBoost.

    Raises:
        InvalidInputError: (from ``predict``) rows with another number of columns.
    """
    expected = int(booster.num_features())
    compiled = CompiledTrees.of(booster)

    def predict(matrix: np.ndarray) -> np.ndarray:
        if matrix.shape[1] != expected:
            raise InvalidInputError(
                f"model version {version} takes {expected} features, got {matrix.shape[1]}",
                details={"field": "request_features", "expected": expected},
            )
        rows = matrix.astype(np.float32)
        if compiled is not None and rows.shape[0] <= COMPILED_MAX_ROWS:
            return compiled.predict(rows)
        return np.asarray(booster.inplace_predict(rows, validate_features=False))

    names = tuple(booster.feature_names or ())
    explainer = TreeShapExplainer(booster, names) if names else None
    return LoadedModel(version, names, predict, explainer)


def background_of_reference(
    reference: Mapping[str, Any], feature_names: tuple[str, ...], *, rows: int = 50, seed: int = 0
) -> Background | None:
    """A background rebuilt from a monitoring reference's numeric profiles.

    The mean is each feature's exact mean; the rows pair each feature's values at
    ``rows`` evenly spaced quantiles of its sample, shuffled per feature with
    ``seed``: a sample of the features' marginals, as if independent. None when a
    feature has no numeric profile.
    """
    profiles = MonitoringReference.from_dict(reference).profile.get("columns", {})
    rng = np.random.default_rng(seed)
    columns: list[np.ndarray] = []
    means: list[float] = []
    for name in feature_names:
        data = profiles.get(name)
        if data is None:
            return None
        profile = column_from_dict(data)
        if not isinstance(profile, NumericColumnProfile) or not len(profile.values):
            return None
        at = np.linspace(0.0, 1.0, rows)
        columns.append(rng.permutation(np.quantile(profile.values, at)))
        means.append(profile.mean)
    return Background(rows=np.column_stack(columns), mean=np.asarray(means))


def _recorded_background(
    name: str, version: int, feature_names: tuple[str, ...]
) -> Background | None:
    """The version's background from its monitoring reference artifact, if it has one."""
    import mlflow
    import mlflow.artifacts

    tags = mlflow.MlflowClient().get_model_version(name, str(version)).tags or {}
    uri = tags.get(REFERENCE_TAG)
    if not uri:
        return None
    content = mlflow.artifacts.load_dict(uri)
    return background_of_reference(content, feature_names, rows=_BACKGROUND_ROWS)


def load_mlflow_model(name: str, version: int) -> LoadedModel:
    """Load an XGBoost or scikit-learn version from the (configured) MLflow registry."""
    import mlflow

    uri = f"models:/{name}/{version}"
    flavors = mlflow.models.get_model_info(uri).flavors
    if "xgboost" in flavors:
        import mlflow.xgboost

        return xgboost_model(version, mlflow.xgboost.load_model(uri))
    if "sklearn" in flavors:
        import mlflow.sklearn

        estimator = mlflow.sklearn.load_model(uri)
        names = tuple(str(n) for n in getattr(estimator, "feature_names_in_", ()))
        background = _recorded_background(name, version, names) if names else None
        explainer = None if background is None else explainer_for(estimator, names, background)
        if hasattr(estimator, "predict_proba"):
            return LoadedModel(
                version, names, lambda m: estimator.predict_proba(m)[:, 1], explainer
            )
        return LoadedModel(version, names, estimator.predict, explainer)
    raise InvalidInputError(
        f"model {name!r} version {version} is neither XGBoost nor scikit-learn",
        details={"model": name, "version": version, "flavors": sorted(flavors)},
    )


class ModelRuntime:
    """The versions behind each alias of one model, swapped atomically on change.

    Args:
        name: Registered model name.
        watcher: Source of the alias map and its changes.
        loader: ``loader(name, version)`` -> :class:`LoadedModel`.
        aliases: Aliases to keep loaded (``champion`` is required to serve).
        poll_timeout_s: Long-poll length; also the retry pace when the registry is down.
        on_versions: Called with :meth:`versions` after the first load and after every
            long poll (change or not), in the watch thread; it must not block. Its
            errors are logged and ignored.
    """

    def __init__(
        self,
        name: str,
        watcher: AliasWatcher,
        loader: Loader,
        *,
        aliases: tuple[str, ...] = ("champion", "challenger", "shadow"),
        poll_timeout_s: float = 10.0,
        on_versions: VersionsHook | None = None,
    ) -> None:
        self.name = name
        self._watcher = watcher
        self._loader = loader
        self._aliases = aliases
        self._poll_timeout_s = poll_timeout_s
        self._loaded: dict[int, LoadedModel] = {}
        self._models: Mapping[str, LoadedModel] = {}
        self.revision = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_versions = on_versions
        self.apply(watcher.subscribe(name))
        if "champion" not in self._models:
            raise NotFoundError(
                f"model {name!r} has no version with alias 'champion'",
                details={"model": name, "alias": "champion"},
            )
        self._announce()

    def snapshot(self) -> Mapping[str, LoadedModel]:
        """The current ``{alias: LoadedModel}``; never mutated after it is published."""
        return self._models

    def versions(self) -> dict[str, int]:
        """Which version serves each alias now."""
        return {alias: m.version for alias, m in self._models.items()}

    def apply(self, state: Mapping[str, Any]) -> bool:
        """Load what a new alias map needs, then publish it; True when anything moved."""
        wanted = {
            alias: int(v) for alias, v in dict(state["aliases"]).items() if alias in self._aliases
        }
        for version in set(wanted.values()) - set(self._loaded):
            self._loaded[version] = self._loader(self.name, version)
        models = {alias: self._loaded[v] for alias, v in wanted.items()}
        changed = {a: m.version for a, m in models.items()} != self.versions()
        self._models = models  # the atomic swap
        self.revision = int(state["revision"])
        keep = set(wanted.values())
        self._loaded = {v: m for v, m in self._loaded.items() if v in keep}
        if changed:
            log.info("aliases swapped", extra={"model": self.name, "versions": self.versions()})
        return changed

    def start(self) -> None:
        """Start following the registry in a daemon thread."""
        self._thread = threading.Thread(target=self._follow, name="alias-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the thread exits after its current long poll)."""
        self._stop.set()

    @property
    def following(self) -> bool:
        """Whether the watch thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                state = self._watcher.wait_for_change(
                    self.name, self.revision, self._poll_timeout_s
                )
                if int(state["revision"]) != self.revision:
                    self.apply(state)
                self._announce()
            except Exception as exc:  # noqa: BLE001 - keep serving the current versions; retry
                log.warning(
                    "alias watch failed; retrying",
                    extra={"model": self.name, "error": repr(exc)},
                )
                self._stop.wait(1.0)

    def _announce(self) -> None:
        if self._on_versions is None:
            return
        try:
            self._on_versions(self.versions())
        except Exception as exc:  # noqa: BLE001 - a hook failure must not stop serving
            log.warning("versions hook failed", extra={"model": self.name, "error": repr(exc)})
