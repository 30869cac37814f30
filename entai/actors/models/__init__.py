"""The ModelRegistry service over MLflow, its record schema and lineage artifacts."""

from __future__ import annotations

from entai.actors.models._lineage_artifacts import (
    ReferenceSource,
    lineage_reference_source,
    version_artifact,
)
from entai.actors.models._registry import (
    ACTOR_NAME,
    ALIASES,
    ModelRegistry,
    ModelRegistryActor,
    ModelVersionInfo,
    start_registry,
)
from entai.actors.models._registry_tags import (
    CARD_TAG,
    EVALUATIONS_TAG,
    HISTORY_PREFIX,
    METRICS_TAG,
    REGISTRANT_TAG,
    VALID_ID_TAG,
    alias_history_of,
    check_alias,
    version_info,
)

__all__ = [
    "ACTOR_NAME",
    "ALIASES",
    "CARD_TAG",
    "EVALUATIONS_TAG",
    "HISTORY_PREFIX",
    "METRICS_TAG",
    "REGISTRANT_TAG",
    "VALID_ID_TAG",
    "ModelRegistry",
    "ModelRegistryActor",
    "ModelVersionInfo",
    "ReferenceSource",
    "alias_history_of",
    "check_alias",
    "lineage_reference_source",
    "start_registry",
    "version_artifact",
    "version_info",
]
