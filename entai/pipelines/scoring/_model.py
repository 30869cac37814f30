"""Which model version a batch scoring uses, and that version in memory.

A model reference is written as on the other commands: ``NAME`` (the version holding
``champion``), ``NAME@ALIAS`` or ``NAME/VERSION``. :class:`ScoringModel` is one version
as the scoring workers get it: its inputs and the booster as bytes, so each worker
builds it once without reaching MLflow (:mod:`._resolve` finds and loads it on the
driver). This module is on the workers' import path: numpy, pyarrow and, when a
booster is built, XGBoost; nothing of the registry, MLflow or Ray.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from entai.shared.core import InvalidInputError, ModelOutputInvalidError

__all__ = [
    "DEFAULT_ALIAS",
    "ModelRef",
    "ScoringModel",
    "feature_matrix",
    "parse_model_ref",
    "predict",
]

DEFAULT_ALIAS = "champion"
_REF = re.compile(r"^(?P<name>[^@/\s]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: a name with an alias or a version (never both)."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias or DEFAULT_ALIAS}"


def parse_model_ref(text: str) -> ModelRef:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` as a :class:`ModelRef`.

    Raises:
        InvalidInputError: anything else.
    """
    found = _REF.match(text.strip())
    if found is None:
        raise InvalidInputError(
            f"model reference {text!r} is not NAME, NAME@ALIAS or NAME/VERSION",
            details={"field": "model", "value": text},
        )
    version = found["version"]
    return ModelRef(found["name"], found["alias"], None if version is None else int(version))


@dataclass(frozen=True)
class ScoringModel:
    """One XGBoost model version, ready to ship to the scoring actors.

    Attributes:
        name: Registered model name.
        version: Its version.
        features: The model's inputs in order (its signature's).
        raw: The booster, serialised (XGBoost's UBJSON).
        run_id: The training run that logged it (lineage).
    """

    name: str
    version: int
    features: tuple[str, ...]
    raw: bytes
    run_id: str | None = None

    def booster(self, nthread: int) -> Any:
        """A fresh booster from :attr:`raw`, predicting on ``nthread`` threads."""
        import xgboost

        booster = xgboost.Booster(model_file=bytearray(self.raw))
        booster.set_param({"nthread": nthread})
        return booster


def feature_matrix(table: pa.Table, features: Sequence[str]) -> np.ndarray:
    """``table``'s ``features`` columns as one float32 row-major matrix; nulls are NaN."""
    matrix = np.empty((table.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        column = pc.cast(table.column(name), pa.float32())
        matrix[:, j] = column.to_numpy(zero_copy_only=False)
    return matrix


def predict(booster: Any, matrix: np.ndarray) -> np.ndarray:
    """The booster's own prediction for the rows of ``matrix``, as float64.

    XGBoost computes in float32, as the serving path does; the float64 copy is exact.

    Raises:
        ModelOutputInvalidError: the model answers other than one score per row.
    """
    scores = np.asarray(booster.inplace_predict(matrix, validate_features=False))
    if scores.size != len(matrix):
        raise ModelOutputInvalidError(
            f"the model answered {scores.size} scores for {len(matrix)} rows; "
            "entai score takes models with one output",
            details={"rows": len(matrix), "scores": int(scores.size)},
        )
    return scores.astype(np.float64).reshape(-1)
