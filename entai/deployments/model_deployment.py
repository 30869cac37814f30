"""The Model deployment: scoring in replicas of its own, behind the Ingress.

Deployed only with ``AppArgs.score_in_ingress=False`` (by default the Ingress scores
in-process): for models too large to load in every Ingress replica, or that gain from
``@serve.batch``. It follows the registry's aliases and hot-swaps like the Ingress's
runtime does (:mod:`entai.deployments.model_runtime`).
"""

# No `from __future__ import annotations`: Serve inspects the batched method at runtime.

import logging
from typing import Any, cast

import numpy as np
from ray import serve

from entai.deployments.app_args import AppArgs, serve_credential, settings_of, start_runtime
from entai.deployments.scoring import explain_rows, score_rows
from entai.shared.core import EntaiError, ServiceUnavailableError

__all__ = ["Model"]

log = logging.getLogger(__name__)


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=64,
    max_queued_requests=256,
    health_check_period_s=5,
    graceful_shutdown_timeout_s=10,
)
class Model:
    """Scores feature rows with the versions holding each alias; batched, hot-swapped."""

    def __init__(self, args: AppArgs) -> None:
        settings = settings_of(args)
        self._runtime = start_runtime(args, settings, serve_credential(settings))
        batched = cast("Any", self.score)
        batched.set_max_batch_size(args.max_batch_size)
        batched.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        log.info("model deployment ready", extra={"versions": self._runtime.versions()})

    def versions(self) -> dict[str, int]:
        """Which version serves each alias in this replica."""
        return self._runtime.versions()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def score(
        self, requests: list[tuple[tuple[str, ...], np.ndarray, list[str], list[str]]]
    ) -> list[Any]:
        """Per request: ``[(score, version, alias), ...]`` per row, or the entai error.

        A request is ``(column names, rows, alias per row, request-feature names)``.

        A ``challenger`` row falls back to ``champion`` when no challenger is loaded;
        ``shadow`` rows without a shadow version are left out (an empty list).
        """
        models = self._runtime.snapshot()  # one snapshot for the whole batch
        out: list[Any] = []
        for names, matrix, aliases, request_names in requests:
            try:
                out.append(score_rows(models, names, matrix, aliases, request_names))
            except EntaiError as exc:
                out.append(exc)
        return out

    def explain(self, request: tuple[tuple[str, ...], np.ndarray, list[str], list[str]]) -> Any:
        """One request's scores and explanations (``ExplainedRow`` per row), or the entai error.

        Not batched: explanations are asked for rarely and cost more than a score.
        """
        names, matrix, aliases, request_names = request
        try:
            return explain_rows(self._runtime.snapshot(), names, matrix, aliases, request_names)
        except EntaiError as exc:
            return exc

    def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy."""
        if "champion" not in self._runtime.snapshot() or not self._runtime.following:
            raise ServiceUnavailableError("model replica lost its champion or alias watch")

    def __del__(self) -> None:
        runtime = getattr(self, "_runtime", None)
        if runtime is not None:
            runtime.stop()
