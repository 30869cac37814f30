"""Batch scoring on Ray Data: plan (no Ray), then score the parts still to do.

:func:`plan_scoring` resolves the model reference through the registry, loads that
version once on the driver, opens the input, checks that it has the model's inputs
(by the model's signature) as numeric columns, cuts it into parts and starts or
resumes the run in the output directory (:mod:`._output`). Nothing of Ray is needed
for it, so every bad argument fails in a second with one clear error.

:func:`run_scoring` hands the parts still to do to Ray Data (:func:`stream_parts`): a
dataset with one row per part, mapped with ``map_batches`` over a fixed pool of
:class:`~._scorer.PartScorer` actors. Each actor builds the booster once (from bytes
shipped with the job, one predicting thread per actor CPU) and, per part, reads the
part's columns, predicts, and writes the part's Parquet file whole. Given the
platform's scoring service (:mod:`._service`), the parts go to the workers it keeps
instead, which stay warm from one run to the next. The driver counts finished parts as
they stream back (the progress bar) and, when all are written, marks the manifest
complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
    ScoringInput,
    open_input,
    plan_parts,
)
from entai.pipelines.scoring._model import ScoringModel, parse_model_ref
from entai.pipelines.scoring._output import Resumption, ScoringOutput, begin_run, finish_run
from entai.pipelines.scoring._resolve import load_scoring_model, resolve_model
from entai.pipelines.scoring._scorer import (
    LINEAGE_COLUMNS,
    PartScorer,
    ScoringJob,
)
from entai.shared.core import EntaiError, InvalidInputError
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings

__all__ = [
    "PartDone",
    "ScoringPlan",
    "ScoringReport",
    "default_output",
    "plan_scoring",
    "run_scoring",
    "stream_parts",
]

log = logging.getLogger(__name__)

_RESERVED = ("prediction", *LINEAGE_COLUMNS)

PartDone = Callable[[int, int], None]
"""``on_part_done(part_index, rows)``: called on the driver as each part is written."""


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
    """Our own error inside a Ray Data failure or a failed service call, if any (not
    Ray's wrapper that is also an instance of it)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        if isinstance(current, EntaiError) and not isinstance(current, ray.exceptions.RayError):
            return current
        seen.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    return None


def _plain(exc: Exception) -> Exception:
    """``exc``, or the EntaiError inside it rebuilt alone (one clear line, picklable)."""
    cause = _entai_cause(exc)
    return exc if cause is None else type(cause)(cause.message, details=cause.details)


def _actors(requested: int | None, parts: int) -> int:
    if requested is not None:
        if requested < 1:
            raise InvalidInputError("actors must be >= 1", details={"field": "actors"})
        return min(requested, parts)
    free = int(ray.available_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
    return max(1, min(free, parts))


def stream_parts(
    job: ScoringJob,
    todo: Sequence[int],
    *,
    workers: int,
    scorer: type[PartScorer] = PartScorer,
) -> Iterator[tuple[int, int]]:
    """Score the parts ``todo`` (indexes) on Ray Data; ``(index, rows)`` as each is written.

    Needs a connected Ray.

    Args:
        job: The scoring job.
        todo: The parts to score.
        workers: Scoring actors, one CPU each.
        scorer: The actors' callable class (a subclass may add work per part).
    """
    # The scorer's own error, not Ray Data's wrapper of it: pickling an exception drops
    # its __cause__, so across processes the wrapper would hide it.
    with data_settings(
        preserve_order=False, enable_progress_bars=False, raise_original_map_exception=True
    ):
        items = ray.data.from_items([{"part": i} for i in todo], override_num_blocks=len(todo))
        written = items.map_batches(
            scorer,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        try:
            for batch in written.iter_batches(batch_size=None, batch_format="numpy"):
                for index, rows in zip(batch["part"], batch["rows"], strict=True):
                    yield int(index), int(rows)
        except Exception as exc:
            plain = _plain(exc)
            if plain is exc:
                raise
            raise plain from None


def _from_service(
    service: Any, job: ScoringJob, todo: Sequence[int], workers: int
) -> Iterator[tuple[int, int]]:
    """The parts as the scoring service reports them written (a streaming call)."""
    for ref in service.score.remote(job, list(todo), workers):
        index, rows = ray.get(ref)
        yield int(index), int(rows)


def run_scoring(
    plan: ScoringPlan,
    *,
    actors: int | None = None,
    on_part_done: PartDone | None = None,
    scorer: type[PartScorer] = PartScorer,
    service: Any = None,
) -> ScoringReport:
    """Score the plan's parts still to do on Ray Data, then mark the run complete.

    Needs a connected Ray. An interruption (an error, Ctrl-C) leaves the parts
    written so far; planning again with the same arguments resumes.

    Args:
        plan: From :func:`plan_scoring`.
        actors: Scoring workers (one CPU each); default: the free CPUs, at most one
            per part.
        on_part_done: Called as each part is written.
        scorer: The actors' callable class (a subclass may add work per part); not
            used with ``service``.
        service: The platform's scoring service (:func:`~._service.scoring_service`):
            score on the workers it keeps instead of a fresh actor pool.
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
        indexes = [p.index for p in todo]
        if service is None:
            written = stream_parts(job, indexes, workers=pool, scorer=scorer)
        else:
            written = _from_service(service, job, indexes, pool)
        try:
            for index, rows in written:
                scored += 1
                if on_part_done is not None:
                    on_part_done(index, rows)
        except Exception as exc:
            plain = _plain(exc)
            if plain is exc:
                raise
            raise plain from None
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
