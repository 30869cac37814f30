"""MLflow set-up in one place: tracking URI, experiment, artifact location, model cards.

Relative SQLite paths and artifact roots in the settings are resolved against the
current directory once, so Ray workers started elsewhere see the same store. A
PostgreSQL tracking URI (``postgresql://...``) uses the installed psycopg2 driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entai.shared.models import ModelCard
from entai.shared.settings import MlflowSettings

__all__ = ["configure_mlflow", "load_card", "resolved_tracking_uri", "store_card"]

_SQLITE = "sqlite:///"
_POSTGRES = "postgresql://"
_POSTGRES_DRIVER = "postgresql+psycopg2://"


def resolved_tracking_uri(settings: MlflowSettings) -> str:
    """The tracking URI with a relative SQLite path made absolute (directory created).

    A bare ``postgresql://`` gets the ``psycopg2`` driver named: SQLAlchemy 2.1
    otherwise picks psycopg 3, which entai does not install.
    """
    uri = settings.tracking_uri.get_secret_value()
    if uri.startswith(_POSTGRES):
        return _POSTGRES_DRIVER + uri[len(_POSTGRES) :]
    if uri.startswith(_SQLITE) and not uri.startswith(_SQLITE + "/"):
        path = Path(uri[len(_SQLITE) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{_SQLITE}{path}"
    return uri


def _artifact_location(settings: MlflowSettings) -> str:
    root = settings.artifact_root
    if "://" in root:
        return root
    path = Path(root).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def configure_mlflow(settings: MlflowSettings) -> Any:
    """Point this process's MLflow at the configured store; return an ``MlflowClient``.

    Creates the experiment (with its artifact location) on first use.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolved_tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if client.get_experiment_by_name(settings.experiment) is None:
        client.create_experiment(
            settings.experiment, artifact_location=_artifact_location(settings)
        )
    mlflow.set_experiment(settings.experiment)
    return client


def store_card(
    client: Any, card: ModelCard, *, experiment: str, version: int, run_id: str | None
) -> str:
    """Save a model card as an artifact; return the URI it can be loaded from.

    The card goes into the version's training run; a version registered without a
    run gets a small run of its own (tagged ``entai.kind=model_card``) to hold it.
    """
    name = card.model_name
    if run_id is None:
        exp = client.get_experiment_by_name(experiment)
        run = client.create_run(
            exp.experiment_id,
            run_name=f"model-card {name} v{version}",
            tags={"entai.kind": "model_card", "entai.model": name},
        )
        run_id = run.info.run_id
        client.set_terminated(run_id)
    path = f"model_cards/{name}/v{version}"
    client.log_text(run_id, card.to_json(), f"{path}/card.json")
    client.log_text(run_id, card.to_markdown(), f"{path}/card.md")
    return f"runs:/{run_id}/{path}/card.json"


def load_card(uri: str) -> ModelCard:
    """Load a model card stored by :func:`store_card`."""
    import mlflow.artifacts

    return ModelCard.from_json(mlflow.artifacts.load_text(uri))
