"""The scoring workers' side of a batch scoring: read a part, predict, write its rows.

This module is what a scoring worker process imports (through the package face, which
loads the driver's modules only when asked for them): the part reader, the model's
inputs and booster, the output rows and the part files. Nothing of the registry,
MLflow, the platform's actors, monitoring or scipy is on this path, so a worker
is ready to score once XGBoost is loaded (and Ray Data, in a pool's actor).

Two kinds of worker run it. :class:`PartScorer` is the callable class of a Ray Data
actor pool (a scoring without a platform): each actor builds the booster once and
scores the parts it is handed, and the pool ends with the run. :class:`ScoringWorker`
is a process of the platform's scoring service (:mod:`._service`), which outlives
every run: it keeps its booster per model version and its scorer (with the row groups
it last read) per run.

Each output row is the input row's columns other than the model's inputs, then
``prediction`` (float64) and the lineage: ``model_name``, ``model_version``,
``scoring_run_id``, ``input_dataset`` and ``created_timestamp`` (when its part was
scored, UTC).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from entai.pipelines.scoring._input import Part, PartReader, ScoringInput
from entai.pipelines.scoring._model import ScoringModel, feature_matrix, predict
from entai.pipelines.scoring._output import ScoringOutput

__all__ = ["LINEAGE_COLUMNS", "PartScorer", "ScoringJob", "ScoringWorker", "scores_table"]

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


class ScoringWorker:
    """A long-lived scorer: one process of the platform's scoring service's pool.

    It outlives every scoring (the service owns it, see :mod:`._service`), so it pays
    its start and its imports once, keeps the booster of the model version it last
    scored (built once per name, version and bytes' digest) and, within one run, its
    :class:`PartScorer` with the row groups it last read. Each part runs on one
    XGBoost thread: the service hands one part at a time to each worker.
    """

    def __init__(self) -> None:
        importlib.import_module("xgboost")  # at start, not inside the first scoring
        self._model: tuple[str, int, bytes] | None = None
        self._booster: Any = None
        self._run_id: str | None = None
        self._scorer: PartScorer | None = None

    def score(self, job: ScoringJob, index: int) -> tuple[int, int]:
        """Score part ``index`` of ``job``; ``(index, rows)`` once it is written."""
        key = (job.model.name, job.model.version, hashlib.sha256(job.model.raw).digest())
        if self._model != key:
            self._model, self._booster, self._scorer = key, job.model.booster(1), None
        if self._scorer is None or self._run_id != job.run_id:
            self._run_id, self._scorer = job.run_id, PartScorer(job, booster=self._booster)
        return index, self._scorer.score_part(job.parts[index])
