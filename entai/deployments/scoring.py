"""How the ingress turns feature rows into scores: a Model deployment call, or in-process.

:func:`score_rows` is the scoring rule itself (which loaded version answers each row),
shared by the Model deployment's batched method and by :class:`LocalScorer`;
:func:`explain_rows` applies the same rule and also splits each row's margin into
feature contributions (the version's explainer). The ingress holds one scorer:

* :class:`HandleScorer` (default) calls the Model deployment through its handle: the
  graph Ingress -> Model with ``@serve.batch``, retried when a Model replica dies.
* :class:`LocalScorer` scores in the ingress replica with its own
  :class:`~entai.deployments.model_runtime.ModelRuntime`, which follows the registry's
  aliases and hot-swaps exactly as the Model replicas do; it saves the handle hop (a
  serialisation and a second replica's request handling) on every prediction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from ray.exceptions import RayActorError

from entai.deployments.model_runtime import LoadedModel, ModelRuntime
from entai.shared.core import EntaiError, ServiceUnavailableError
from entai.shared.models import ExplainMethod

__all__ = ["ExplainedRow", "HandleScorer", "LocalScorer", "Scored", "explain_rows", "score_rows"]

log = logging.getLogger(__name__)

Scored = list[tuple[float, int, str]]
"""Per row: ``(score, version, alias that answered)``."""

_RETRIES = 4


def score_rows(
    models: Mapping[str, LoadedModel],
    names: tuple[str, ...],
    matrix: np.ndarray,
    aliases: Sequence[str],
    request_names: Sequence[str] = (),
) -> Scored:
    """Score each row with the version holding its alias in ``models``.

    A ``challenger`` row falls back to ``champion`` when no challenger is loaded;
    without a version for some other alias (``shadow``) the answer is an empty list.

    Raises:
        InvalidInputError: a version needs a feature the rows do not have, or does
            not take one of ``request_names`` (the caller's request features).
        ModelOutputInvalidError: a version answered a NaN or infinite score.
    """
    distinct = set(aliases)
    if len(distinct) == 1:  # every row by one alias (always, without a canary)
        (alias,) = distinct
        model, served = _model_for(models, alias)
        if model is None:
            return []
        scores = model.score(names, matrix, request_names)
        return [(s, model.version, served) for s in scores.tolist()]
    result: Scored = [(float("nan"), 0, "")] * len(aliases)
    wanted = np.asarray(aliases, dtype=object)
    for alias in distinct:
        model, served = _model_for(models, alias)
        if model is None:
            return []
        rows = np.flatnonzero(wanted == alias)
        scores = model.score(names, matrix[rows], request_names)
        for i, s in zip(rows.tolist(), scores.tolist(), strict=True):
            result[i] = (s, model.version, served)
    return result


@dataclass(frozen=True)
class ExplainedRow:
    """One row's score and the split of its margin into feature contributions.

    Attributes:
        score: What predict answers for the row.
        version: The version that answered.
        alias: The alias it answered as.
        method: The explainer (``tree_shap``, ``linear``, ``sampling_shapley``).
        feature_names: The version's inputs, in the order of ``contributions``.
        base_value: The margin the contributions start from.
        contributions: One per input; they sum to ``margin - base_value``.
        margin: The version's margin for the row.
    """

    score: float
    version: int
    alias: str
    method: ExplainMethod
    feature_names: tuple[str, ...]
    base_value: float
    contributions: tuple[float, ...]
    margin: float


def explain_rows(
    models: Mapping[str, LoadedModel],
    names: tuple[str, ...],
    matrix: np.ndarray,
    aliases: Sequence[str],
    request_names: Sequence[str] = (),
) -> list[ExplainedRow]:
    """Score and explain each row with the version holding its alias (as :func:`score_rows`).

    Raises:
        InvalidInputError: as :func:`score_rows`, or a version cannot be explained.
        ModelOutputInvalidError: a version answered a NaN or infinite score.
    """
    out: list[ExplainedRow | None] = [None] * len(aliases)
    wanted = np.asarray(aliases, dtype=object)
    for alias in sorted(set(aliases)):
        model, served = _model_for(models, alias)
        if model is None:
            return []
        rows = np.flatnonzero(wanted == alias)
        part = matrix if len(rows) == len(aliases) else matrix[rows]
        attribution = model.explain(names, part, request_names)
        if attribution.outputs is not None:  # TreeSHAP computed the scores on the way
            scores = model.finite(attribution.outputs)
        else:
            scores = model.score(names, part, request_names)
        for k, i in enumerate(rows.tolist()):
            out[i] = ExplainedRow(
                score=float(scores[k]),
                version=model.version,
                alias=served,
                method=attribution.method,
                feature_names=attribution.feature_names,
                base_value=attribution.base_value,
                contributions=tuple(attribution.contributions[k].tolist()),
                margin=float(attribution.margins[k]),
            )
    return [row for row in out if row is not None]


def _exact(model: LoadedModel) -> bool:
    return model.explainer is None or model.explainer.method != "sampling_shapley"


def _model_for(models: Mapping[str, LoadedModel], alias: str) -> tuple[LoadedModel | None, str]:
    """The version answering for ``alias`` and the alias it is served as."""
    model = models.get(alias)
    if model is None and alias == "challenger":
        return models["champion"], "champion"
    return model, alias


class HandleScorer:
    """Scores through the Model deployment; retried when its replica died under a call.

    Args:
        handle: The Model deployment's handle.
        timeout_s: Bound on one request's scoring, retries included.
    """

    def __init__(self, handle: Any, timeout_s: float) -> None:
        self._handle = handle
        self._timeout_s = timeout_s

    async def score(
        self,
        names: tuple[str, ...],
        matrix: np.ndarray,
        aliases: Sequence[str],
        request_names: Sequence[str] = (),
    ) -> Scored:
        """One Model call (retried on a dead replica), bounded by the timeout."""
        deadline = time.monotonic() + self._timeout_s
        for attempt in range(_RETRIES):
            remaining = deadline - time.monotonic()
            try:
                result = await asyncio.wait_for(
                    self._handle.score.remote((names, matrix, list(aliases), list(request_names))),
                    timeout=max(0.001, remaining),
                )
            except RayActorError as exc:
                log.warning("model replica died; retrying", extra={"attempt": attempt + 1})
                if attempt + 1 == _RETRIES or remaining <= 0:
                    raise ServiceUnavailableError(
                        "model replicas are restarting; retry", details={"error": repr(exc)}
                    ) from exc
                await asyncio.sleep(0.05 * 2**attempt)
                continue
            except TimeoutError as exc:
                raise ServiceUnavailableError(
                    f"the model did not answer within {self._timeout_s}s",
                    details={"timeout_s": self._timeout_s},
                ) from exc
            if isinstance(result, EntaiError):
                raise result
            return cast("Scored", result)
        raise AssertionError("unreachable: the loop returns or raises")

    async def explain(
        self,
        names: tuple[str, ...],
        matrix: np.ndarray,
        aliases: Sequence[str],
        request_names: Sequence[str] = (),
    ) -> list[ExplainedRow]:
        """Scores and explanations from a Model replica (not batched), bounded by the timeout."""
        try:
            result = await asyncio.wait_for(
                self._handle.explain.remote((names, matrix, list(aliases), list(request_names))),
                timeout=self._timeout_s,
            )
        except RayActorError as exc:
            raise ServiceUnavailableError(
                "model replicas are restarting; retry", details={"error": repr(exc)}
            ) from exc
        except TimeoutError as exc:
            raise ServiceUnavailableError(
                f"the model did not answer within {self._timeout_s}s",
                details={"timeout_s": self._timeout_s},
            ) from exc
        if isinstance(result, EntaiError):
            raise result
        return cast("list[ExplainedRow]", result)

    async def versions(self) -> dict[str, int]:
        """Which version serves each alias in a Model replica."""
        return dict(await self._handle.versions.remote())

    @property
    def healthy(self) -> bool:
        """Always: the Model deployment checks its own health."""
        return True


class LocalScorer:
    """Scores in this process with a started :class:`ModelRuntime`.

    Scoring one request's rows takes well under a millisecond for the tree models
    served here, so it runs on the event loop; a request takes the runtime's snapshot
    once, so it finishes on the versions it started with.
    """

    def __init__(self, runtime: ModelRuntime) -> None:
        self._runtime = runtime

    async def score(
        self,
        names: tuple[str, ...],
        matrix: np.ndarray,
        aliases: Sequence[str],
        request_names: Sequence[str] = (),
    ) -> Scored:
        """The rows' scores from the current snapshot."""
        return score_rows(self._runtime.snapshot(), names, matrix, aliases, request_names)

    async def explain(
        self,
        names: tuple[str, ...],
        matrix: np.ndarray,
        aliases: Sequence[str],
        request_names: Sequence[str] = (),
    ) -> list[ExplainedRow]:
        """The rows' scores and explanations from the current snapshot.

        Exact explanations (TreeSHAP, linear) cost about what scoring does and run on
        the event loop; a sampling explainer evaluates the model thousands of times
        per row, so a snapshot holding one explains in a thread.
        """
        models = self._runtime.snapshot()
        if all(_exact(m) for m in models.values()):
            return explain_rows(models, names, matrix, aliases, request_names)
        return await asyncio.to_thread(explain_rows, models, names, matrix, aliases, request_names)

    async def versions(self) -> dict[str, int]:
        """Which version serves each alias in this replica."""
        return self._runtime.versions()

    @property
    def healthy(self) -> bool:
        """Whether a champion is loaded and the alias watch is alive."""
        return "champion" in self._runtime.snapshot() and self._runtime.following

    def stop(self) -> None:
        """Stop following the registry."""
        self._runtime.stop()
