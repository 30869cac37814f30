"""Which model version a batch scoring uses, and that version in memory.

A model reference is written as on the other commands: ``NAME`` (the version holding
``champion``), ``NAME@ALIAS`` or ``NAME/VERSION``. :func:`resolve_model` asks the model
registry for the version and :func:`load_scoring_model` loads it from MLflow once, on
the driver: the feature names come from the model's signature (its recorded inputs,
in order) and the booster travels to the scoring actors as bytes, so each actor
builds it once without reaching MLflow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from entai.actors.backends import configure_mlflow
from entai.actors.core import Service
from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.shared.core import InvalidInputError, ModelOutputInvalidError, NotFoundError
from entai.shared.settings import MlflowSettings

__all__ = [
    "DEFAULT_ALIAS",
    "ModelRef",
    "ScoringModel",
    "feature_matrix",
    "load_scoring_model",
    "parse_model_ref",
    "predict",
    "resolve_model",
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


def resolve_model(registry: Service[ModelRegistry], ref: ModelRef) -> ModelVersionInfo:
    """The registered version ``ref`` names now.

    Raises:
        NotFoundError: no such model (said so), version or alias.
    """
    try:
        if ref.version is not None:
            return registry.call(ModelRegistry.version, ref.name, ref.version)
        return registry.call(ModelRegistry.resolve, ref.name, ref.alias or DEFAULT_ALIAS)
    except NotFoundError:
        registry.call(ModelRegistry.versions, ref.name)  # "no registered model" first
        raise


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


def load_scoring_model(settings: MlflowSettings, info: ModelVersionInfo) -> ScoringModel:
    """Load ``info``'s version from MLflow on this process.

    Raises:
        InvalidInputError: the version is not an XGBoost model, or records no inputs.
    """
    import mlflow
    import mlflow.xgboost

    configure_mlflow(settings)
    model_info = mlflow.models.get_model_info(info.uri)
    if "xgboost" not in model_info.flavors:
        raise InvalidInputError(
            f"model {info.name!r} version {info.version} is not an XGBoost model; "
            "entai score takes XGBoost models",
            details={"model": info.name, "version": info.version},
        )
    booster = mlflow.xgboost.load_model(info.uri)
    signature = model_info.signature
    names = tuple(signature.inputs.input_names()) if signature is not None else ()
    features = names or tuple(booster.feature_names or ())
    if not features:
        raise InvalidInputError(
            f"model {info.name!r} version {info.version} records no input names "
            "(no signature, no feature names)",
            details={"model": info.name, "version": info.version},
        )
    booster_names = tuple(booster.feature_names or ())
    if booster_names and booster_names != features:
        raise InvalidInputError(
            f"model {info.name!r} version {info.version}: its signature's inputs "
            f"{list(features)} differ from the booster's {list(booster_names)}",
            details={"model": info.name, "version": info.version},
        )
    return ScoringModel(
        name=info.name,
        version=info.version,
        features=features,
        raw=bytes(booster.save_raw(raw_format="ubj")),
        run_id=info.run_id,
    )
