"""The platform's scoring service: a long-lived driver for scorings' Ray Data work.

``entai score`` against a running platform plans on its own process, then hands the
parts to this named, detached actor (``entai-scoring``), which it starts on first use
and which stays until the platform stops. The service runs each scoring's dataset
(:func:`~._run.stream_parts`, ``warm=True``) and streams back each part as it is
written. Being the dataset's driver for every run, it owns the task workers Ray Data
starts, and Ray keeps a task's worker process for the next task of the same driver:
from the second scoring on, the workers have Ray Data, XGBoost and the scorer imported
and keep the booster of the model version they last scored
(:func:`~._scorer.score_parts_warm`).

What is not warm: the first scoring after the platform starts (the service and its
workers start and import then), a worker Ray stopped since (Ray keeps about as many
idle workers as the node has CPUs), each run's planning on the caller (the
registry, the model read from MLflow, the input's files), and every run after the job
that started the service has exited: Ray reuses a task's worker only within a live
job, and the service belongs to the job of the ``entai score`` that started it
(measured, docs/operations.md "Batch scoring"; scorer actors the service keeps are the
open fix). Like every service it
reserves no CPU; each scoring task asks for one. It runs one scoring at a time; a
second ``entai score`` waits for the first to finish.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ray

from entai.actors.core import service_actor
from entai.pipelines.scoring._run import stream_parts
from entai.pipelines.scoring._scorer import ScoringJob
from entai.shared.settings import EntaiSettings

__all__ = ["SCORING_SERVICE", "ScoringService", "ScoringServiceActor", "scoring_service"]

SCORING_SERVICE = "entai-scoring"


class ScoringService:
    """Runs scorings' parts on Ray Data's warm task workers."""

    def score(
        self, job: ScoringJob, todo: Sequence[int], workers: int
    ) -> Iterator[tuple[int, int]]:
        """Score the parts ``todo`` of ``job`` on ``workers`` tasks at once;
        ``(index, rows)`` as each part is written (a streaming actor call)."""
        yield from stream_parts(job, todo, workers=workers, warm=True)


ScoringServiceActor = ray.remote(ScoringService)


def scoring_service(settings: EntaiSettings, namespace: str | None = None) -> Any:
    """Get, or start on first use, the platform's ``entai-scoring`` actor."""
    return service_actor(ScoringServiceActor, SCORING_SERVICE, namespace or settings.ray.namespace)
