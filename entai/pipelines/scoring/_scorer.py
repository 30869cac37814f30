"""The scoring workers' side of a batch scoring: read a part, predict, write its rows.

This module is what a scoring worker process imports (through the package face, which
loads the driver's modules only when asked for them): the part reader, the model's
inputs and booster, the output rows and the part files. Nothing of the registry,
MLflow, the platform's actors, monitoring or scipy is on this path, so a worker
is ready to score once Ray Data and XGBoost are loaded.

Two kinds of worker run it. :class:`PartScorer` is the callable class of a Ray Data
actor pool: each actor builds the booster once and scores the parts it is handed.
:func:`score_parts_warm` is the same work as a Ray Data task function, for the warm
scoring service (:mod:`._service`): Ray keeps a task's worker process alive between
tasks, so a process keeps its booster per model version, and its scorer (with the row
groups it last read) per run, from one task to the next and from one run to the next.

Each output row is the input row's columns other than the model's inputs, then
``prediction`` (float64) and the lineage: ``model_name``, ``model_version``,
``scoring_run_id``, ``input_dataset`` and ``created_timestamp`` (when its part was
scored, UTC).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from entai.pipelines.scoring._input import Part, PartReader, ScoringInput
from entai.pipelines.scoring._model import ScoringModel, feature_matrix, predict
from entai.pipelines.scoring._output import ScoringOutput

__all__ = ["LINEAGE_COLUMNS", "PartScorer", "ScoringJob", "score_parts_warm", "scores_table"]

LINEAGE_COLUMNS = (
    "model_name",
    "model_version",
    "scoring_run_id",
    "input_dataset",
    "created_timestamp",
)


@dataclass(frozen=True)
class ScoringJob:
    """What every scoring worker needs, shipped to it with the work.

    Attributes:
        model: The model version, serialised.
        source: The opened input.
        parts: The whole plan (workers look parts up by index).
        keep: Input columns copied to the output, in input order.
        output: The output directory.
        run_id: The scoring run's id.
    """

    model: ScoringModel
    source: ScoringInput
    parts: tuple[Part, ...]
    keep: tuple[str, ...]
    output: str
    run_id: str


def _constant(value: str, rows: int) -> pa.Array:
    """A string column holding ``value`` on every row, dictionary-encoded (no copies)."""
    indices = pa.array(np.zeros(rows, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string()))


def scores_table(
    job: ScoringJob, rows: pa.Table, scores: np.ndarray, created: datetime
) -> pa.Table:
    """The output rows of one part: kept input columns, prediction, lineage."""
    n = rows.num_rows
    stamp = np.full(n, np.datetime64(created.astimezone(UTC).replace(tzinfo=None), "us"))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {c: rows.column(c) for c in job.keep}
    columns.update(
        prediction=pa.array(scores, pa.float64()),
        model_name=_constant(job.model.name, n),
        model_version=pa.array(np.full(n, job.model.version, dtype=np.int64)),
        scoring_run_id=_constant(job.run_id, n),
        input_dataset=_constant(job.source.uri, n),
        created_timestamp=pa.array(stamp).cast(pa.timestamp("us", tz="UTC")),
    )
    return pa.table(columns)


class PartScorer:
    """Scores parts by index: the callable class of the actor pool.

    Args:
        job: The scoring job.
        nthread: XGBoost threads (the actor's CPUs).
        booster: The job's model, already built (a warm worker's); else built here.
    """

    def __init__(self, job: ScoringJob, nthread: int = 1, booster: Any = None) -> None:
        self._job = job
        self._booster = job.model.booster(nthread) if booster is None else booster
        self._reader = PartReader(
            job.source, [*job.keep, *job.model.features], numeric=job.model.features
        )
        self._output = ScoringOutput(job.output)

    def score_part(self, part: Part) -> int:
        """Read, predict and write one part; the number of rows it had."""
        rows = self._reader.read(part)
        scores = predict(self._booster, feature_matrix(rows, self._job.model.features))
        self._output.write_part(
            part.index, scores_table(self._job, rows, scores, datetime.now(UTC))
        )
        return int(rows.num_rows)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score the parts named in ``batch["part"]``; their row counts."""
        indexes = [int(i) for i in batch["part"]]
        counts = [self.score_part(self._job.parts[i]) for i in indexes]
        return {"part": np.asarray(indexes, np.int64), "rows": np.asarray(counts, np.int64)}


@dataclass
class _WarmProcess:
    """What one warm worker process keeps between tasks."""

    model: tuple[str, int, bytes] | None = None
    booster: Any = None
    run_id: str | None = None
    scorer: PartScorer | None = None


_warm = _WarmProcess()


def score_parts_warm(batch: dict[str, np.ndarray], job: ScoringJob) -> dict[str, np.ndarray]:
    """Score the parts named in ``batch["part"]`` in a long-lived task worker.

    The booster is built once per model version (name, version and the bytes' digest)
    in this process, the scorer once per run, so the parts of one run that land on this
    process share its row-group cache, as on an actor. A task runs on one CPU: one
    XGBoost thread.
    """
    key = (job.model.name, job.model.version, hashlib.sha256(job.model.raw).digest())
    if _warm.model != key:
        _warm.model, _warm.booster, _warm.run_id = key, job.model.booster(1), None
    if _warm.scorer is None or _warm.run_id != job.run_id:
        _warm.run_id, _warm.scorer = job.run_id, PartScorer(job, booster=_warm.booster)
    return _warm.scorer(batch)
