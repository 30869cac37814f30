"""How the model registry keeps entai's records in MLflow: tags, alias history, aliases.

A version's lineage, metrics, evaluations and card location are model-version tags; each
alias move is one registered-model tag ``entai.alias_history.<revision>`` (so no tag
grows without bound), and the revision subscribers track is the number of those tags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from entai.shared.core import InvalidInputError

__all__ = [
    "ALIASES",
    "CARD_TAG",
    "EVALUATIONS_TAG",
    "HISTORY_PREFIX",
    "METRICS_TAG",
    "REGISTRANT_TAG",
    "VALID_ID_TAG",
    "ModelVersionInfo",
    "alias_history_of",
    "aliases_by_version",
    "check_alias",
    "version_info",
]

ALIASES = ("champion", "challenger", "shadow")
HISTORY_PREFIX = "entai.alias_history."
REGISTRANT_TAG = "entai.registrant"
METRICS_TAG = "entai.metrics"
VALID_ID_TAG = "entai.valid_dataset_id"
EVALUATIONS_TAG = "entai.evaluations"
CARD_TAG = "entai.card"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version as entai sees it."""

    name: str
    version: int
    source: str
    run_id: str | None
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """A URI MLflow can load this exact version from."""
        return f"models:/{self.name}/{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """Validation metrics recorded at registration."""
        return {k: float(v) for k, v in json.loads(self.tags.get(METRICS_TAG, "{}")).items()}


def check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise InvalidInputError(
            f"alias must be one of {ALIASES}, got {alias!r}", details={"field": "alias"}
        )


def alias_history_of(rm: Any) -> list[dict[str, Any]]:
    tags: Mapping[str, str] = rm.tags or {}
    keys = sorted(k for k in tags if k.startswith(HISTORY_PREFIX))
    return [json.loads(tags[k]) for k in keys]


def aliases_by_version(rm: Any) -> dict[int, tuple[str, ...]]:
    """The aliases each version of a registered model holds, from the model's alias map.

    MLflow's version search (``search_model_versions``) leaves a version's aliases empty
    on SQL stores; the registered model's map is where they always are.
    """
    held: dict[int, tuple[str, ...]] = {}
    for alias, version in sorted((rm.aliases or {}).items()):
        held[int(version)] = (*held.get(int(version), ()), alias)
    return held


def version_info(mv: Any, aliases: tuple[str, ...] | None = None) -> ModelVersionInfo:
    """``mv`` as entai sees it; ``aliases`` replaces the version's own (see
    :func:`aliases_by_version`)."""
    return ModelVersionInfo(
        name=mv.name,
        version=int(mv.version),
        source=mv.source,
        run_id=mv.run_id,
        aliases=tuple(mv.aliases or ()) if aliases is None else aliases,
        tags=dict(mv.tags or {}),
    )
