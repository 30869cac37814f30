"""Explanations over HTTP: contributions, where each value came from, and PII withheld.

The explainers are the domain's (``entai.shared.models``); scoring applies them per
alias (:func:`entai.deployments.scoring.explain_rows`). This module shapes their answer
for one request: per row, each model input with its contribution, its value, the
feature view it was read from (or ``request`` for a request-time feature), the read's
status and the stored row's event timestamp, so that an explanation can be audited
later against the online store's history.

Values of restricted PII features are withheld, as ``/v1/features/online`` masks them:
the inputs are named and their contributions given, but a principal without
``features:read_pii`` on the feature gets ``value: null, masked: true``. The decision is
governance's (``authorize_features`` over the model's PII-classed inputs); when
governance denies the read altogether (no ``features:read``, or ``pii_mode: refuse``)
every PII-classed input is withheld: failing closed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from entai.deployments.platform import FeatureInputs, PlatformServices
from entai.deployments.schemas import FeatureContribution, RowExplanation
from entai.deployments.scoring import ExplainedRow
from entai.shared.core import PermissionDeniedError
from entai.shared.data import PiiClass
from entai.shared.features import FeatureViewProjection
from entai.shared.governance import Decision

__all__ = [
    "REQUEST_SOURCE",
    "Explanations",
    "FeatureAuthorizer",
    "Scorer",
    "masked_inputs",
    "model_pii",
    "row_explanations",
]

REQUEST_SOURCE = "request"
"""The source named for a request-time feature (sent in the body, not read)."""


class FeatureAuthorizer(Protocol):
    """What decides a feature read (the replica's ``AuthCache``)."""

    def authorize_features(
        self, token: str, features: Mapping[str, Any], resource: str = "*"
    ) -> Decision: ...


def model_pii(projections: Sequence[FeatureViewProjection]) -> dict[str, str]:
    """``{view:feature: PII class}`` of the model's inputs that carry a PII class."""
    return {
        f"{p.view.name}:{name}": str(p.view.field(name).pii.value)
        for p in projections
        for name in p.features
        if p.view.field(name).pii != PiiClass.NONE
    }


def masked_inputs(
    auth: FeatureAuthorizer, token: str, pii: Mapping[str, str], resource: str
) -> frozenset[str]:
    """The model inputs (feature names) whose values ``token``'s principal may not see.

    Args:
        auth: Decides the feature read.
        token: The caller's bearer token.
        pii: :func:`model_pii` of the model's inputs.
        resource: What is read, for the audit record (``model:<name>``).

    Raises:
        AuthenticationError: a bad token (already refused by the route before this).
    """
    if not pii:
        return frozenset()
    try:
        decision = auth.authorize_features(token, dict(pii), resource)
        refs: Sequence[str] = decision.masked_features if decision.allowed else list(pii)
    except PermissionDeniedError:
        refs = list(pii)
    return frozenset(ref.split(":", 1)[1] for ref in refs)


def _sources(inputs: FeatureInputs) -> dict[str, tuple[str, int, int]]:
    """Feature name -> (view, index of its read, index of the feature in that read)."""
    found: dict[str, tuple[str, int, int]] = {}
    for r, (view, read) in enumerate(zip(inputs.views, inputs.reads, strict=True)):
        for f, name in enumerate(read.features):
            found.setdefault(name, (view, r, f))
    return found


def _number(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def row_explanations(
    explained: Sequence[ExplainedRow], inputs: FeatureInputs, masked: frozenset[str]
) -> list[RowExplanation]:
    """One explanation per entity row, its inputs in the model's order.

    Args:
        explained: The scorer's rows, in entity order.
        inputs: The request's model inputs (values, and the reads they came from).
        masked: Inputs whose values are withheld (:func:`masked_inputs`).
    """
    sources = _sources(inputs)
    column = {name: j for j, name in enumerate(inputs.names)}
    out: list[RowExplanation] = []
    for i, row in enumerate(explained):
        features = []
        for name, contribution in zip(row.feature_names, row.contributions, strict=True):
            hidden = name in masked
            value = None if hidden or name not in column else inputs.matrix[i, column[name]]
            source = sources.get(name)
            status: str | None = None
            stamp: str | None = None
            view = REQUEST_SOURCE
            if source is not None:
                view, r, f = source
                read = inputs.reads[r]
                status = str(read.statuses[f][i])
                when = read.event_timestamps[i]
                stamp = None if when is None else when.isoformat()
            features.append(
                FeatureContribution(
                    name=name,
                    contribution=contribution,
                    value=None if value is None else _number(value),
                    masked=hidden,
                    source=view,
                    status=status,
                    event_timestamp=stamp,
                )
            )
        out.append(
            RowExplanation(
                version=row.version,
                alias=row.alias,
                method=row.method,
                prediction=row.score,
                margin=row.margin,
                base_value=row.base_value,
                features=features,
            )
        )
    return out


class Scorer(Protocol):
    """What explains rows (the ingress's ``LocalScorer`` or ``HandleScorer``)."""

    async def explain(
        self,
        names: tuple[str, ...],
        matrix: Any,
        aliases: Sequence[str],
        request_names: Sequence[str] = (),
    ) -> list[ExplainedRow]: ...


class Explanations:
    """The ingress's explanations: scorer, PII decision and shaping, for one request.

    Args:
        services: The replica's platform services (auth cache, breakers, the model's
            feature projections).
        scorer: Scores and explains rows with the versions behind each alias.
    """

    def __init__(self, services: PlatformServices, scorer: Scorer) -> None:
        self._services = services
        self._scorer = scorer
        self._pii = model_pii(services.model_features)

    async def explain(
        self,
        token: str,
        model: str,
        inputs: FeatureInputs,
        aliases: Sequence[str],
        request_names: Sequence[str],
    ) -> list[RowExplanation]:
        """Explain the request's rows; PII values withheld per the caller's permissions.

        Raises:
            InvalidInputError: a version cannot take or explain the rows.
            ServiceUnavailableError: governance did not answer (its breaker).
        """
        explained = await self._scorer.explain(inputs.names, inputs.matrix, aliases, request_names)
        masked: frozenset[str] = frozenset()
        if self._pii:
            auth, pii, resource = self._services.auth, self._pii, f"model:{model}"
            masked = await self._services.breakers.governance.call(
                lambda: asyncio.to_thread(masked_inputs, auth, token, pii, resource)
            )
        return row_explanations(explained, inputs, masked)
