"""Per-row explanations: each feature's contribution to a model's margin, and the base value.

Three explainers, one per kind of model, all answering an :class:`Attribution` whose
contributions sum, row by row, to the model's margin minus the base value:

* :class:`TreeShapExplainer`: exact (path-dependent) TreeSHAP for an XGBoost
  ``Booster``, from its native ``pred_contribs``; the margin is the booster's raw output
  (log-odds for ``binary:logistic``).
* :class:`LinearExplainer`: exact attributions of a linear model,
  ``coef * (x - background mean)``; the base value is the margin at the background mean.
* :class:`SamplingExplainer`: any model, through its margin function. Permutation
  sampling of interventional Shapley values against a background sample: for each of a
  fixed number of seeded permutations (drawn in antithetic pairs: a permutation and its
  reverse) the row's values replace the background's one feature at a time, and each
  feature is credited with the mean change of the margin over the background rows. The
  changes along one permutation add up to ``margin(x) - mean margin(background)``, so
  the contributions sum to the margin exactly; only their split between features is an
  estimate.

:func:`explainer_for` picks the explainer of a model object; :func:`margin_function`
gives the function the sampling explainer explains. XGBoost is imported only when a
booster is explained (it is heavy, and this package is imported by the CLI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from entai.shared.core import InvalidInputError

__all__ = [
    "Attribution",
    "Background",
    "ExplainMethod",
    "Explainer",
    "LinearExplainer",
    "SamplingExplainer",
    "TreeShapExplainer",
    "explainer_for",
    "margin_function",
]

ExplainMethod = Literal["tree_shap", "linear", "sampling_shapley"]
MarginFunction = Callable[[np.ndarray], np.ndarray]

_EPS = 1e-12


@dataclass(frozen=True)
class Background:
    """Reference rows an explanation is relative to.

    Attributes:
        rows: A sample of reference rows (rows x features), no missing values.
        mean: The exact mean of the reference data per feature (the linear explainer's
            reference point); the sample's mean when only the sample is known.
    """

    rows: np.ndarray
    mean: np.ndarray

    @classmethod
    def of(cls, matrix: npt.ArrayLike, *, max_rows: int = 100, seed: int = 0) -> Background:
        """The background of a reference matrix: its column means and up to ``max_rows`` rows.

        Rows with a missing value are left out of the sample; the mean of each column
        is over its finite values.

        Raises:
            InvalidInputError: no complete row, or a column without a finite value.
        """
        data = np.asarray(matrix, dtype=np.float64)
        if data.ndim != 2:
            raise InvalidInputError(
                "a background must be a matrix", details={"field": "background"}
            )
        finite = np.isfinite(data)
        counts = finite.sum(axis=0)
        if data.shape[0] == 0 or (counts == 0).any():
            raise InvalidInputError(
                "a background needs a finite value in every column",
                details={"field": "background"},
            )
        mean = np.where(finite, data, 0.0).sum(axis=0) / counts
        complete = data[finite.all(axis=1)]
        if len(complete) == 0:
            raise InvalidInputError(
                "a background needs at least one row without missing values",
                details={"field": "background"},
            )
        if len(complete) > max_rows:
            picked = np.random.default_rng(seed).choice(len(complete), max_rows, replace=False)
            complete = complete[np.sort(picked)]
        return cls(rows=complete, mean=mean)


@dataclass(frozen=True)
class Attribution:
    """Contributions of each feature to each row's margin.

    Attributes:
        method: Which explainer computed them.
        feature_names: The columns of ``contributions``.
        base_value: The margin the contributions start from (the expected margin).
        contributions: Rows x features; each row sums to ``margins - base_value``.
        margins: The model's margin per row (log-odds for a logistic model).
        outputs: What the model serves per row (a probability for a logistic model),
            when the explainer computed it on the way (TreeSHAP does); else None.
    """

    method: ExplainMethod
    feature_names: tuple[str, ...]
    base_value: float
    contributions: np.ndarray
    margins: np.ndarray
    outputs: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.contributions.shape[0])

    def rows(self, index: npt.ArrayLike) -> Attribution:
        """The attribution of a subset of rows, in the order of ``index``."""
        picked = np.asarray(index, dtype=np.intp)
        return Attribution(
            self.method,
            self.feature_names,
            self.base_value,
            self.contributions[picked],
            self.margins[picked],
            None if self.outputs is None else self.outputs[picked],
        )

    def gap(self) -> float:
        """Largest ``|base + sum(contributions) - margin|`` over the rows (0 if none)."""
        if not len(self):
            return 0.0
        total = self.base_value + self.contributions.sum(axis=1)
        return float(np.max(np.abs(total - self.margins)))


class Explainer(Protocol):
    """Explains rows whose columns are its ``feature_names``, in that order."""

    @property
    def method(self) -> ExplainMethod:
        """The explainer's name in responses."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        ...

    def explain(self, matrix: np.ndarray) -> Attribution:
        """One row of contributions per row of ``matrix``."""
        ...


class TreeShapExplainer:
    """Exact TreeSHAP of an XGBoost booster (its ``pred_contribs``), in margin space.

    XGBoost's contributions are path-dependent TreeSHAP: the expectation over the
    features left out follows the training data's cover in each tree, so no background
    is needed; the last column XGBoost answers is the base value.

    Args:
        booster: An ``xgboost.Booster`` with one output (binary or regression).
        feature_names: Its inputs; default: the booster's own names.
    """

    method: ExplainMethod = "tree_shap"

    def __init__(self, booster: Any, feature_names: Sequence[str] | None = None) -> None:
        names = feature_names if feature_names is not None else booster.feature_names
        if not names:
            raise InvalidInputError(
                "a booster to explain must name its features", details={"field": "feature_names"}
            )
        self._booster = booster
        self.feature_names = tuple(str(n) for n in names)

    def explain(self, matrix: np.ndarray) -> Attribution:
        """Contributions of each row (missing values as NaN, as the booster takes them).

        One ``DMatrix`` serves the three calls: contributions, margins, and the
        served outputs (``Booster.predict``'s default, what ``inplace_predict`` answers).
        """
        # The booster's own package builds its input (shared imports no model library):
        # whoever made the booster has imported it already.
        dmatrix = sys.modules[type(self._booster).__module__.partition(".")[0]].DMatrix
        rows = _checked(matrix, len(self.feature_names))
        probe = rows if len(rows) else np.full((1, len(self.feature_names)), np.nan)
        # unnamed columns (features are not validated: the rows are in the booster's order)
        data = dmatrix(probe.astype(np.float32), missing=np.nan)
        contribs = np.asarray(
            self._booster.predict(data, pred_contribs=True, validate_features=False),
            dtype=np.float64,
        )
        if contribs.ndim != 2 or contribs.shape[1] != len(self.feature_names) + 1:
            raise InvalidInputError(
                "TreeSHAP explains models with one output only",
                details={"field": "model", "shape": list(contribs.shape)},
            )
        base = float(contribs[0, -1])
        if not len(rows):
            empty = np.zeros((0, len(self.feature_names)))
            return Attribution(self.method, self.feature_names, base, empty, np.zeros(0))
        margins = np.asarray(
            self._booster.predict(data, output_margin=True, validate_features=False),
            dtype=np.float64,
        ).reshape(-1)
        outputs = np.asarray(
            self._booster.predict(data, validate_features=False), dtype=np.float64
        ).reshape(-1)
        return Attribution(
            self.method, self.feature_names, base, contribs[:, :-1], margins, outputs
        )


class LinearExplainer:
    """Exact attributions of a linear model: ``coef * (x - mean)``, base ``coef . mean + b``.

    Args:
        coef: One weight per feature.
        intercept: The margin at x = 0.
        feature_names: The inputs, in ``coef``'s order.
        background: What "average" is: the contributions are relative to its mean.
    """

    method: ExplainMethod = "linear"

    def __init__(
        self,
        coef: npt.ArrayLike,
        intercept: float,
        feature_names: Sequence[str],
        background: Background,
    ) -> None:
        weights = np.asarray(coef, dtype=np.float64).reshape(-1)
        if len(weights) != len(feature_names) or len(background.mean) != len(feature_names):
            raise InvalidInputError(
                f"a linear model over {len(feature_names)} features needs as many weights "
                f"and background means, got {len(weights)} and {len(background.mean)}",
                details={"field": "coef"},
            )
        self._coef = weights
        self._intercept = float(intercept)
        self._mean = np.asarray(background.mean, dtype=np.float64)
        self.feature_names = tuple(feature_names)

    @classmethod
    def of(
        cls, estimator: Any, feature_names: Sequence[str], background: Background
    ) -> LinearExplainer:
        """The explainer of a fitted scikit-learn linear model (binary or regression).

        Raises:
            InvalidInputError: the estimator has several outputs (multi-class).
        """
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64)
        if (coef.ndim == 2 and coef.shape[0] != 1) or intercept.size > 1:
            raise InvalidInputError(
                "linear attributions explain models with one output only",
                details={"field": "model", "outputs": int(coef.shape[0])},
            )
        return cls(coef.reshape(-1), float(intercept.reshape(-1)[0]), feature_names, background)

    def explain(self, matrix: np.ndarray) -> Attribution:
        """Exact contributions of each row.

        Raises:
            InvalidInputError: a row has a missing value (a linear model cannot take it).
        """
        rows = _checked(matrix, len(self.feature_names))
        _require_complete(rows, self.feature_names)
        contributions = self._coef * (rows - self._mean)
        base = float(self._coef @ self._mean + self._intercept)
        margins = rows @ self._coef + self._intercept
        return Attribution(self.method, self.feature_names, base, contributions, margins)


class SamplingExplainer:
    """Permutation-sampling Shapley values of any margin function against a background.

    The estimate's error shrinks as ``1/sqrt(n_permutations)``; with the background's
    rows it is ``n_permutations * (features + 1) * len(background.rows)`` model
    evaluations per explained row, in one call of the margin function per row.

    Args:
        margin: Rows (in ``feature_names`` order) -> one margin per row.
        feature_names: The model's inputs.
        background: The reference rows features are "removed" to.
        n_permutations: Permutations per row (rounded up to an even number: they come
            in antithetic pairs).
        seed: Seed of the permutations; the same seed gives the same answer.
    """

    method: ExplainMethod = "sampling_shapley"

    def __init__(
        self,
        margin: MarginFunction,
        feature_names: Sequence[str],
        background: Background,
        *,
        n_permutations: int = 16,
        seed: int = 0,
    ) -> None:
        if background.rows.ndim != 2 or background.rows.shape[1] != len(feature_names):
            raise InvalidInputError(
                f"the background must have {len(feature_names)} columns",
                details={"field": "background"},
            )
        if n_permutations < 1:
            raise InvalidInputError(
                "n_permutations must be at least 1", details={"field": "n_permutations"}
            )
        self._margin = margin
        self.feature_names = tuple(feature_names)
        self._background = np.asarray(background.rows, dtype=np.float64)
        self._pairs = (n_permutations + 1) // 2
        self._seed = seed
        self._base = float(np.mean(self._evaluate(self._background)))

    @property
    def n_permutations(self) -> int:
        """Permutations per row (even)."""
        return 2 * self._pairs

    def _evaluate(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._margin(rows), dtype=np.float64).reshape(-1)

    def _permutations(self) -> np.ndarray:
        rng = np.random.default_rng(self._seed)
        n = len(self.feature_names)
        forward = np.stack([rng.permutation(n) for _ in range(self._pairs)])
        return np.concatenate([forward, forward[:, ::-1]])

    def explain(self, matrix: np.ndarray) -> Attribution:
        """Estimated contributions of each row; each row sums to its margin exactly.

        Every row is explained with the same permutations (the seed's), so a row's
        answer does not depend on the other rows of the call.
        """
        rows = _checked(matrix, len(self.feature_names))
        n_features = len(self.feature_names)
        perms = self._permutations()
        steps = np.arange(n_features + 1)
        # position of each feature in each permutation; feature j is taken from the row
        # at step k when it is among the first k of the permutation
        position = np.argsort(perms, axis=1)
        taken = position[:, None, :] < steps[None, :, None]  # (P, F+1, F)
        contributions = np.zeros((len(rows), n_features))
        margins = np.zeros(len(rows))
        background = self._background
        for i, x in enumerate(rows):
            hybrid = np.where(taken[:, :, None, :], x[None, None, None, :], background[None, None])
            values = self._evaluate(hybrid.reshape(-1, n_features))
            curve = values.reshape(len(perms), n_features + 1, len(background)).mean(axis=2)
            steps_gain = np.diff(curve, axis=1)  # (P, F): gain of the feature added at step k
            credited = np.zeros((len(perms), n_features))
            np.put_along_axis(credited, perms, steps_gain, axis=1)
            contributions[i] = credited.mean(axis=0)
            margins[i] = float(curve[0, -1])
        # every permutation's curve starts at the background's mean margin and ends at
        # the row's margin, so the contributions sum to margin - base exactly
        return Attribution(self.method, self.feature_names, self._base, contributions, margins)


def margin_function(model: Any) -> MarginFunction:
    """The function of a fitted model whose output an explanation splits.

    ``decision_function`` when the model has one (log-odds for a logistic model), else
    the log-odds of ``predict_proba``'s positive class, else ``predict``.
    """
    if hasattr(model, "decision_function"):
        return lambda rows: np.asarray(model.decision_function(rows), dtype=np.float64)
    if hasattr(model, "predict_proba"):

        def log_odds(rows: np.ndarray) -> np.ndarray:
            p = np.asarray(model.predict_proba(rows), dtype=np.float64)[:, 1]
            p = np.clip(p, _EPS, 1.0 - _EPS)
            return np.log(p / (1.0 - p))

        return log_odds
    return lambda rows: np.asarray(model.predict(rows), dtype=np.float64)


def _is_booster(model: Any) -> bool:
    cls = type(model)
    return cls.__name__ == "Booster" and cls.__module__.startswith("xgboost")


def _is_linear(model: Any) -> bool:
    coef = getattr(model, "coef_", None)
    if coef is None or not type(model).__module__.startswith("sklearn.linear_model"):
        return False
    return bool(np.asarray(coef).ndim == 1 or np.asarray(coef).shape[0] == 1)


def explainer_for(
    model: Any,
    feature_names: Sequence[str],
    background: Background | None = None,
    *,
    n_permutations: int = 16,
    seed: int = 0,
) -> Explainer:
    """The explainer of a fitted model: TreeSHAP, linear, or sampling Shapley.

    An XGBoost ``Booster`` gets :class:`TreeShapExplainer`; a scikit-learn linear model
    (``sklearn.linear_model``, one output) :class:`LinearExplainer`; anything else
    :class:`SamplingExplainer` over :func:`margin_function`.

    Raises:
        InvalidInputError: the model needs a background and none was given.
    """
    if _is_booster(model):
        return TreeShapExplainer(model, feature_names)
    if background is None:
        raise InvalidInputError(
            f"explaining a {type(model).__name__} needs a background sample (none recorded)",
            details={"field": "background", "model_type": type(model).__name__},
        )
    if _is_linear(model):
        return LinearExplainer.of(model, feature_names, background)
    return SamplingExplainer(
        margin_function(model),
        feature_names,
        background,
        n_permutations=n_permutations,
        seed=seed,
    )


def _checked(matrix: np.ndarray, n_features: int) -> np.ndarray:
    rows = np.asarray(matrix, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise InvalidInputError(
            f"rows to explain must have {n_features} columns, got shape {list(rows.shape)}",
            details={"field": "request_features", "expected": n_features},
        )
    return rows


def _require_complete(rows: np.ndarray, names: Sequence[str]) -> None:
    gaps = np.isnan(rows).any(axis=0) if rows.size else np.zeros(0, dtype=bool)
    if gaps.any():
        absent = [n for n, gap in zip(names, gaps, strict=True) if gap]
        raise InvalidInputError(
            f"a linear model cannot explain rows with missing values of {absent}",
            details={"field": "request_features", "missing_values": absent},
        )
