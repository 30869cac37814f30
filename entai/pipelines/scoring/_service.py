"""The platform's scoring service: a pool of scoring workers that outlives every run.

``entai score`` against a running platform plans on its own process, then hands the
parts to this named, detached actor (``entai-scoring``), which ``entai up`` starts
(or the first ``entai score``, when it is missing) and which stays until the platform
stops. The service owns its :class:`~._scorer.ScoringWorker` actors: it starts
``scoring.warm_workers`` of them when it starts (their imports run then, in the
background) and more when a scoring asks for more, and they live as long as it does. Each run hands
its parts out one at a time to as many workers as it asks for, each next part to the
first worker done, and streams back each part as it is written. So every run after
the service's start, whichever process asks for it, finds its workers started,
XGBoost imported and, for the model version they last scored, the booster built.

Why actors and not Ray Data here: a Ray Data actor pool ends with its dataset, and
Ray keeps a task worker process for later tasks only while the job that created the
service lives (measured, docs/operations.md "Batch scoring"), so neither stays warm
across ``entai score`` commands. A scoring without a platform still runs on a Ray
Data actor pool (:func:`~._run.stream_parts`).

The service and its workers reserve no CPU, like every service (a reservation held
while idle would starve training on a small cluster); a run asks for at most the
cluster's free CPUs' worth of workers. The workers prefer ``compute`` nodes. A worker
that dies is restarted and its part sent again (a part is written whole, so a second
write replaces the first). The service runs one scoring at a time; a second
``entai score`` waits for the first to finish.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import ray

from entai.actors.core import role_options, service_actor
from entai.pipelines.scoring._scorer import ScoringJob, ScoringWorker
from entai.shared.core import InvalidInputError
from entai.shared.settings import EntaiSettings

__all__ = [
    "SCORING_SERVICE",
    "ScoringService",
    "ScoringServiceActor",
    "ScoringWorkerActor",
    "scoring_service",
]

SCORING_SERVICE = "entai-scoring"

ScoringWorkerActor = ray.remote(ScoringWorker)


class ScoringService:
    """Runs scorings' parts on the workers it keeps.

    Args:
        workers: Workers to start at once (``scoring.warm_workers`` when the platform
            starts); a run that asks for more starts the rest.
    """

    def __init__(self, workers: int = 0) -> None:
        self._workers: list[Any] = []
        self._grow(workers)

    def _grow(self, count: int) -> list[Any]:
        while len(self._workers) < count:
            self._workers.append(
                ScoringWorkerActor.options(
                    num_cpus=0,
                    max_restarts=-1,
                    max_task_retries=-1,
                    **role_options("compute"),
                ).remote()
            )
        return self._workers[:count]

    def ready(self) -> int:
        """Wait until every worker has started (imports done); how many there are."""
        ray.get([w.__ray_ready__.remote() for w in self._workers])
        return len(self._workers)

    def score(
        self, job: ScoringJob, todo: Sequence[int], workers: int
    ) -> Iterator[tuple[int, int]]:
        """Score the parts ``todo`` of ``job`` on ``workers`` workers at once;
        ``(index, rows)`` as each part is written (a streaming actor call).

        Raises:
            InvalidInputError: ``workers`` < 1.
            Exception: the first part that fails, as its worker raised it; the parts
                in flight then still finish (a resumed run skips them).
        """
        if workers < 1:
            raise InvalidInputError("workers must be >= 1", details={"field": "workers"})
        shipped = ray.put(job)  # once per run, not once per part
        queue = list(reversed(todo))
        running: dict[Any, Any] = {}
        for worker in self._grow(min(workers, len(queue))):
            running[worker.score.remote(shipped, queue.pop())] = worker
        while running:
            [finished], _ = ray.wait(list(running), num_returns=1)
            worker = running.pop(finished)
            index, rows = ray.get(finished)
            yield index, rows
            if queue:
                running[worker.score.remote(shipped, queue.pop())] = worker


ScoringServiceActor = ray.remote(ScoringService)


def scoring_service(
    settings: EntaiSettings, namespace: str | None = None, *, workers: int | None = None
) -> Any:
    """Get, or start on first use, the platform's ``entai-scoring`` actor.

    Args:
        workers: Workers a new service starts at once; default:
            ``settings.scoring.warm_workers``. Ignored when the service already runs.
    """
    if workers is None:
        workers = settings.scoring.warm_workers
    return service_actor(
        ScoringServiceActor, SCORING_SERVICE, namespace or settings.ray.namespace, workers
    )
