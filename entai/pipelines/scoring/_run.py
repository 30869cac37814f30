"""Batch scoring on Ray Data: plan (no Ray), then score the parts still to do.

:func:`plan_scoring` resolves the model reference through the registry, loads that
version once on the driver, opens the input, checks that it has the model's inputs
(by the model's signature) as numeric columns, cuts it into parts and starts or
resumes the run in the output directory (:mod:`._output`). Nothing of Ray is needed
for it, so every bad argument fails in a second with one clear error.

:func:`run_scoring` hands the parts still to do to Ray Data: a dataset with one row
per part, mapped with ``map_batches`` over a fixed pool of :class:`PartScorer` actors.
Each actor builds the booster once (from bytes shipped with the job, one predicting
thread per actor CPU) and, per part, reads the part's columns, predicts, and writes
the part's Parquet file whole. The driver counts finished parts as they stream back
(the progress bar) and, when all are written, marks the manifest complete.

Each output row is the input row's columns other than the model's inputs, then
``prediction`` (float64) and the lineage: ``model_name``, ``model_version``,
``scoring_run_id``, ``input_dataset`` and ``created_timestamp`` (when its part was
scored, UTC).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import ray
import ray.data

from entai.actors.core import Service
from entai.actors.models import ModelRegistry
from entai.pipelines.data_context import data_settings
from entai.pipelines.scoring._input import (
    DEFAULT_PART_BYTES,
    DEFAULT_PART_ROWS,
    Part,
    PartReader,
    ScoringInput,
    open_input,
    plan_parts,
)
from entai.pipelines.scoring._model import (
    ScoringModel,
    feature_matrix,
    load_scoring_model,
    parse_model_ref,
    predict,
    resolve_model,
)
from entai.pipelines.scoring._output import Resumption, ScoringOutput, begin_run, finish_run
from entai.shared.core import EntaiError, InvalidInputError
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings

__all__ = [
    "LINEAGE_COLUMNS",
    "PartDone",
    "PartScorer",
    "ScoringJob",
    "ScoringPlan",
    "ScoringReport",
    "default_output",
    "plan_scoring",
    "run_scoring",
    "scores_table",
]

log = logging.getLogger(__name__)

LINEAGE_COLUMNS = (
    "model_name",
    "model_version",
    "scoring_run_id",
    "input_dataset",
    "created_timestamp",
)
_RESERVED = ("prediction", *LINEAGE_COLUMNS)

PartDone = Callable[[int, int], None]
"""``on_part_done(part_index, rows)``: called on the driver as each part is written."""


@dataclass(frozen=True)
class ScoringJob:
    """What every scoring actor needs, shipped to it once.

    Attributes:
        model: The model version, serialised.
        source: The opened input.
        parts: The whole plan (actors look parts up by index).
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
    """

    def __init__(self, job: ScoringJob, nthread: int = 1) -> None:
        self._job = job
        self._booster = job.model.booster(nthread)
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


@dataclass(frozen=True)
class ScoringPlan:
    """A scoring ready to run: the job and where the run starts."""

    job: ScoringJob
    resumption: Resumption

    @property
    def todo(self) -> tuple[Part, ...]:
        """The parts still to score."""
        return self.resumption.todo

    @property
    def done(self) -> int:
        """How many parts an earlier attempt already wrote."""
        return len(self.job.parts) - len(self.resumption.todo)


@dataclass(frozen=True)
class ScoringReport:
    """What a scoring did: rows is the whole output's, parts_scored this attempt's."""

    model: str
    version: int
    input: str
    output: str
    run_id: str
    parts: int
    parts_scored: int
    rows: int
    resumed: bool
    seconds: float


def default_output(lake: Lake, model: ScoringModel, source: ScoringInput) -> str:
    """The lake directory of a scoring: one per model version and input fingerprint,
    so rerunning the same command resumes it."""
    digest = source.fingerprint.removeprefix("sha256:")[:16]
    where = [
        "predictions",
        "batch",
        f"model={model.name}",
        f"version={model.version}",
        f"input={digest}",
    ]
    return lake.path(*where) if lake.is_local else "/".join([lake.root.rstrip("/"), *where])


def _check_columns(source: ScoringInput, model: ScoringModel) -> None:
    names = source.schema.names
    missing = [f for f in model.features if f not in names]
    if missing:
        raise InvalidInputError(
            f"input {source.uri} lacks column(s) {missing} that model {model.name!r} "
            f"version {model.version} takes (its inputs: {list(model.features)})",
            details={"field": "input", "missing": missing, "inputs": list(model.features)},
        )
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    bad = [
        f"{f.name} ({f.type})"
        for f in source.schema  # CSV: as inferred from the start of the first file
        if f.name in model.features
        and not (any(test(f.type) for test in numeric) or pa.types.is_null(f.type))
    ]
    if bad:
        raise InvalidInputError(
            f"input {source.uri}: model inputs must be numbers; got {', '.join(bad)}",
            details={"field": "input", "columns": bad},
        )
    clash = [c for c in _RESERVED if c in names]
    if clash:
        raise InvalidInputError(
            f"input {source.uri} has column(s) {clash} that entai score writes; rename them",
            details={"field": "input", "columns": clash},
        )


def plan_scoring(
    settings: EntaiSettings,
    registry: Service[ModelRegistry],
    model: str,
    input_uri: str,
    output: str | None = None,
    *,
    part_rows: int = DEFAULT_PART_ROWS,
    part_bytes: int = DEFAULT_PART_BYTES,
    restart: bool = False,
) -> ScoringPlan:
    """Resolve, load and check everything a scoring needs, and start or resume its run.

    Args:
        settings: The platform's settings (the lake, MLflow).
        registry: The model registry.
        model: ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``.
        input_uri: A Parquet or CSV file or directory, a URI, or a lake dataset id.
        output: The output directory; by default the lake's
            ``predictions/batch/model=<name>/version=<v>/input=<fingerprint>``.
        part_rows: Rows per part of a Parquet input.
        part_bytes: Bytes per part of a CSV input.
        restart: Discard what an earlier attempt wrote in ``output``.

    Raises:
        InvalidInputError: a bad model reference or input, or an input without the
            model's inputs.
        NotFoundError: an unknown model, version or alias.
        ConflictError: ``output`` holds something else (see :func:`begin_run`).
    """
    ref = parse_model_ref(model)
    info = resolve_model(registry, ref)
    lake = Lake(settings.lake.root)
    source = open_input(input_uri, lake)
    loaded = load_scoring_model(settings.mlflow, info)
    _check_columns(source, loaded)
    parts = plan_parts(source, part_rows=part_rows, part_bytes=part_bytes)
    where = output or default_output(lake, loaded, source)
    resumption = begin_run(
        ScoringOutput(where),
        {
            "model": loaded.name,
            "model_version": loaded.version,
            "input_fingerprint": source.fingerprint,
            "features": list(loaded.features),
        },
        parts,
        lineage={
            "input": source.uri,
            "input_location": source.location,
            "input_format": source.fmt,
            "model_reference": str(ref),
            "model_run_id": loaded.run_id,
        },
        restart=restart,
    )
    keep = tuple(c for c in source.schema.names if c not in loaded.features)
    job = ScoringJob(loaded, source, parts, keep, where, resumption.run_id)
    return ScoringPlan(job, resumption)


def _entai_cause(exc: BaseException) -> EntaiError | None:
    """Our own error inside a Ray Data failure, if any."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        if isinstance(current, EntaiError):
            return current
        seen.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    return None


def _actors(requested: int | None, parts: int) -> int:
    if requested is not None:
        if requested < 1:
            raise InvalidInputError("actors must be >= 1", details={"field": "actors"})
        return min(requested, parts)
    free = int(ray.available_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
    return max(1, min(free, parts))


def run_scoring(
    plan: ScoringPlan,
    *,
    actors: int | None = None,
    on_part_done: PartDone | None = None,
    scorer: type[PartScorer] = PartScorer,
) -> ScoringReport:
    """Score the plan's parts still to do on Ray Data, then mark the run complete.

    Needs a connected Ray. An interruption (an error, Ctrl-C) leaves the parts
    written so far; planning again with the same arguments resumes.

    Args:
        plan: From :func:`plan_scoring`.
        actors: Scoring actors (one CPU each); default: the free CPUs, at most one
            per part.
        on_part_done: Called as each part is written.
        scorer: The actors' callable class (a subclass may add work per part).
    """
    start = time.perf_counter()
    job, todo = plan.job, plan.todo
    output = ScoringOutput(job.output)
    scored = 0
    if todo:
        pool = _actors(actors, len(todo))
        log.info(
            "scoring",
            extra={"model": job.model.name, "version": job.model.version, "parts": len(todo)},
        )
        with data_settings(preserve_order=False, enable_progress_bars=False):
            items = ray.data.from_items(
                [{"part": p.index} for p in todo], override_num_blocks=len(todo)
            )
            written = items.map_batches(
                scorer,
                fn_constructor_kwargs={"job": job},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_cpus=1,
            )
            try:
                for batch in written.iter_batches(batch_size=None, batch_format="numpy"):
                    for index, rows in zip(batch["part"], batch["rows"], strict=True):
                        scored += 1
                        if on_part_done is not None:
                            on_part_done(int(index), int(rows))
            except Exception as exc:
                cause = _entai_cause(exc)
                if cause is None:
                    raise
                raise type(cause)(cause.message, details=cause.details) from None
    manifest = plan.resumption.manifest
    if manifest.get("status") != "complete":
        manifest = finish_run(output, manifest)
    return ScoringReport(
        model=job.model.name,
        version=job.model.version,
        input=job.source.uri,
        output=job.output,
        run_id=job.run_id,
        parts=len(job.parts),
        parts_scored=scored,
        rows=int(manifest["rows"]),
        resumed=plan.resumption.resumed,
        seconds=round(time.perf_counter() - start, 3),
    )
