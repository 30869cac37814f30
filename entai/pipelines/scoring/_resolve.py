"""Finding and loading a scoring's model version, on the driver.

:func:`resolve_model` asks the model registry which version a reference names and
:func:`load_scoring_model` loads that version from MLflow once: the feature names come
from the model's signature (its recorded inputs, in order) and the booster is
serialised into a :class:`~._model.ScoringModel` for the scoring workers.
"""

from __future__ import annotations

from entai.actors.backends import configure_mlflow
from entai.actors.core import Service
from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.pipelines.scoring._model import DEFAULT_ALIAS, ModelRef, ScoringModel
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.settings import MlflowSettings

__all__ = ["load_scoring_model", "resolve_model"]


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
