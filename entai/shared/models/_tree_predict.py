"""An XGBoost tree ensemble scored in numpy, for the few rows of a serving request.

``Booster.inplace_predict`` costs about 100 µs of CPU for one row on this machine
(``docs/benchmarks.md``): its Python wrapper builds an array interface and a JSON
config, and the library makes a new context for each call. The trees themselves take
a microsecond. :class:`CompiledTrees` holds a booster's trees as flat node arrays and
walks every tree of a batch level by level with a few numpy gathers, summing the
leaves in float32 in tree order as XGBoost's CPU predictor does. :meth:`CompiledTrees.of`
compiles only what it reproduces (a ``gbtree`` booster, one output, numeric splits, an
objective whose transform is the identity or the sigmoid) and checks itself against
the booster on rows it makes up, missing values included; anything else, or a check
that disagrees, gives None and the caller keeps XGBoost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CompiledTrees"]

log = logging.getLogger(__name__)

_SIGMOID = frozenset({"binary:logistic", "reg:logistic"})
_IDENTITY = frozenset({"reg:squarederror", "binary:logitraw"})
_CHECK_ROWS = 256
_CHECK_RTOL = 1e-6


@dataclass(frozen=True)
class CompiledTrees:
    """A booster's trees as flat arrays (leaves point to themselves).

    Attributes:
        num_features: Columns a row must have.
        roots: Each tree's root node.
        feature: Each node's split feature (0 for a leaf).
        threshold: Each node's split value: a row goes left when below it.
        children: ``2 * node`` is the left child, ``2 * node + 1`` the right.
        default_left: Whether a missing value goes left.
        value: Each leaf's value (0 for a split node).
        depth: The longest root-to-leaf path, in splits.
        base_margin: Every row's margin before the first tree.
        sigmoid: Whether the prediction is the margin's sigmoid (else the margin).
    """

    num_features: int
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    children: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    depth: int
    base_margin: np.float32
    sigmoid: bool

    @classmethod
    def of(cls, booster: Any) -> CompiledTrees | None:
        """The booster's trees compiled, or None when they are not reproduced exactly
        enough (see the module docstring); never raises for a model it cannot take."""
        try:
            compiled = cls._compile(json.loads(bytes(booster.save_raw("json"))))
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            log.debug("model not compiled", extra={"reason": repr(exc)})
            return None
        if compiled is None or not compiled._agrees_with(booster):
            return None
        return compiled

    @classmethod
    def _compile(cls, model: dict[str, Any]) -> CompiledTrees | None:
        learner = model["learner"]
        params = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        if (
            booster["name"] != "gbtree"
            or int(params.get("num_class", "0")) > 1
            or int(params.get("num_target", "1")) != 1
            or objective not in _SIGMOID | _IDENTITY
        ):
            return None
        trees = booster["model"]["trees"]
        if not trees or any(int(group) != 0 for group in booster["model"]["tree_info"]):
            return None
        num_features = int(params["num_feature"])
        roots, features, thresholds, children, defaults, values = [], [], [], [], [], []
        depth = offset = 0
        for tree in trees:
            if any(int(t) != 0 for t in tree["split_type"]) or tree["categories_nodes"]:
                return None
            left = np.asarray(tree["left_children"], dtype=np.int64)
            right = np.asarray(tree["right_children"], dtype=np.int64)
            leaf = left < 0
            nodes = np.arange(len(left), dtype=np.int64)
            pairs = np.stack([np.where(leaf, nodes, left), np.where(leaf, nodes, right)], axis=1)
            split = np.asarray(tree["split_conditions"], dtype=np.float32)
            roots.append(offset)
            features.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
            thresholds.append(np.where(leaf, np.float32(0), split))
            children.append((pairs + offset).ravel())
            defaults.append(np.asarray(tree["default_left"], dtype=bool))
            values.append(np.where(leaf, split, np.float32(0)))
            depth = max(depth, _depth(left, right))
            offset += len(left)
        feature = np.concatenate(features)
        if feature.size and int(feature.max()) >= num_features:
            return None
        base = np.float32(np.ravel(json.loads(params["base_score"]))[0])  # "5E-1" or "[5E-1]"
        sigmoid = objective in _SIGMOID
        if sigmoid:  # XGBoost keeps the base score as a probability
            base = np.float32(-np.log(np.float32(1.0) / base - np.float32(1.0)))
        return cls(
            num_features=num_features,
            roots=np.asarray(roots, dtype=np.int64),
            feature=feature,
            threshold=np.concatenate(thresholds).astype(np.float32),
            children=np.concatenate(children),
            default_left=np.concatenate(defaults),
            value=np.concatenate(values).astype(np.float32),
            depth=depth,
            base_margin=base,
            sigmoid=sigmoid,
        )

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Predictions (float32) for ``rows`` (float32, ``num_features`` columns; NaN missing)."""
        n = rows.shape[0]
        flat = np.ascontiguousarray(rows, dtype=np.float32).ravel()
        starts = (np.arange(n, dtype=np.int64) * rows.shape[1])[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat[starts + self.feature[node]]
            right = x >= self.threshold[node]
            if missing:
                right = np.where(np.isnan(x), ~self.default_left[node], right)
            node = self.children[2 * node + right]
        leaves = self.value[node]
        column = np.full((n, 1), self.base_margin, dtype=np.float32)
        # XGBoost adds each tree's leaf to a float32 margin in tree order: cumsum does too
        summed = np.concatenate([column, leaves], axis=1)
        margin = np.cumsum(summed, axis=1, dtype=np.float32)[:, -1]
        if self.sigmoid:
            # float32 steps as XGBoost's sigmoid; exp in float64 rounded, as glibc's expf
            exp = np.exp(-margin.astype(np.float64)).astype(np.float32)
            return np.float32(1.0) / (exp + np.float32(1.0))
        return margin

    def _agrees_with(self, booster: Any) -> bool:
        """Whether made-up rows (missing values among them) score as the booster scores them."""
        rng = np.random.default_rng(0)
        spread = float(np.abs(self.threshold).max()) if self.threshold.size else 1.0
        rows = rng.normal(scale=max(spread, 1.0), size=(_CHECK_ROWS, self.num_features))
        rows[rng.random(rows.shape) < 0.1] = np.nan
        used = self.threshold[self.threshold != 0]
        if used.size:  # values exactly on split points, where < and <= differ
            picks = rng.integers(used.size, size=rows.shape)
            on_split = rng.random(rows.shape) < 0.2
            rows[on_split] = used[picks[on_split]]
        rows = rows.astype(np.float32)
        try:
            expected = np.asarray(booster.inplace_predict(rows, validate_features=False))
        except Exception as exc:  # noqa: BLE001 - a booster we cannot check is not compiled
            log.debug("model not compiled", extra={"reason": repr(exc)})
            return False
        got = self.predict(rows)
        if expected.shape != got.shape:
            return False
        agrees = bool(np.allclose(got, expected, rtol=_CHECK_RTOL, atol=0.0))
        if not agrees:
            log.warning("compiled trees disagree with XGBoost; scoring with XGBoost")
        return agrees


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """The longest root-to-leaf path of one tree, in splits."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if left[node] < 0:
            deepest = max(deepest, level)
        else:
            stack.extend(((int(left[node]), level + 1), (int(right[node]), level + 1)))
    return deepest
