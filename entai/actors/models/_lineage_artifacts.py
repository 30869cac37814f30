"""Reading a registered version's lineage artifacts (reference profile, training config).

Training logs them as artifacts of the version's run and tags the version with their
URIs (:mod:`entai.shared.monitoring._reference`); this reads them back from MLflow.
The monitoring reference comes with the fairness columns the version's model card
names (``fairness``: the monitor recomputes their measures per window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from entai.actors.backends import configure_mlflow
from entai.actors.models._registry_tags import CARD_TAG
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.models import ModelCard
from entai.shared.monitoring import REFERENCE_TAG, WindowFairness
from entai.shared.settings import MlflowSettings

__all__ = ["ReferenceSource", "lineage_reference_source", "version_artifact"]


def version_artifact(
    settings: MlflowSettings, name: str, version: int, tag: str
) -> dict[str, Any] | None:
    """The JSON artifact the version's ``tag`` points at; None when it has no such tag.

    Raises:
        NotFoundError: the model has no such version.
        InvalidInputError: the artifact is not a JSON object.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise NotFoundError(
            f"model {name!r} has no version {version}",
            details={"model": name, "version": version},
        ) from exc
    uri = (mv.tags or {}).get(tag)
    if not uri:
        return None
    content = mlflow.artifacts.load_dict(uri)
    if not isinstance(content, dict):
        raise InvalidInputError(
            f"artifact {uri} of model {name!r} version {version} is not a JSON object",
            details={"model": name, "version": version, "tag": tag},
        )
    return content


ReferenceSource = Callable[[str, int], Mapping[str, Any] | None]
"""``source(model, version)``: the version's monitoring reference artifact, or None."""


def lineage_reference_source(settings: MlflowSettings) -> ReferenceSource:
    """Reads a version's monitoring reference through its :data:`REFERENCE_TAG`, with
    the fairness columns its model card names (``fairness``), if any."""

    def load(model: str, version: int) -> Mapping[str, Any] | None:
        reference = version_artifact(settings, model, version, REFERENCE_TAG)
        if reference is None:
            return None
        card = version_artifact(settings, model, version, CARD_TAG)
        columns = WindowFairness.columns_of(ModelCard.from_mapping(card)) if card else {}
        return {**reference, "fairness": columns} if columns else reference

    return load
