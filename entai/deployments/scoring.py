"""How the ingress turns feature rows into scores: a Model deployment call, or in-process.

:func:`score_rows` is the scoring rule itself (which loaded version answers each row),
shared by the Model deployment's batched method and by :class:`LocalScorer`. The
ingress holds one scorer:

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
from typing import Any, cast

import numpy as np
from ray.exceptions import RayActorError

from entai.deployments.model_runtime import LoadedModel, ModelRuntime
from entai.shared.core import EntaiError, ServiceUnavailableError

__all__ = ["HandleScorer", "LocalScorer", "Scored", "score_rows"]

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
