"""Batch scoring (``entai score``): a registered model over a dataset on Ray Data,
resumable part by part, with lineage on every output row.

The face loads the scoring workers' side (:mod:`._scorer` and what it reads and
writes) at once and the driver's side (planning through the registry and MLflow,
running on Ray Data, the platform's scoring service) on first use of one of its
names: a worker process that imports the scorer then never loads the registry,
the platform's actors or their monitoring (scipy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from entai.pipelines.scoring._input import (
    DEFAULT_PART_BYTES,
    DEFAULT_PART_ROWS,
    InputFile,
    Part,
    PartReader,
    ScoringInput,
    open_input,
    plan_parts,
)
from entai.pipelines.scoring._model import (
    DEFAULT_ALIAS,
    ModelRef,
    ScoringModel,
    feature_matrix,
    parse_model_ref,
    predict,
)
from entai.pipelines.scoring._output import (
    MANIFEST,
    Resumption,
    ScoringOutput,
    begin_run,
    finish_run,
    part_name,
)
from entai.pipelines.scoring._scorer import (
    LINEAGE_COLUMNS,
    PartScorer,
    ScoringJob,
    ScoringWorker,
    scores_table,
)

if TYPE_CHECKING:
    from entai.pipelines.scoring._resolve import load_scoring_model, resolve_model
    from entai.pipelines.scoring._run import (
        PartDone,
        ScoringPlan,
        ScoringReport,
        default_output,
        plan_scoring,
        run_scoring,
        stream_parts,
    )
    from entai.pipelines.scoring._service import (
        SCORING_SERVICE,
        ScoringService,
        ScoringServiceActor,
        ScoringWorkerActor,
        scoring_service,
    )

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_PART_BYTES",
    "DEFAULT_PART_ROWS",
    "LINEAGE_COLUMNS",
    "MANIFEST",
    "SCORING_SERVICE",
    "InputFile",
    "ModelRef",
    "Part",
    "PartDone",
    "PartReader",
    "PartScorer",
    "Resumption",
    "ScoringInput",
    "ScoringJob",
    "ScoringModel",
    "ScoringOutput",
    "ScoringPlan",
    "ScoringReport",
    "ScoringService",
    "ScoringServiceActor",
    "ScoringWorker",
    "ScoringWorkerActor",
    "begin_run",
    "default_output",
    "feature_matrix",
    "finish_run",
    "load_scoring_model",
    "open_input",
    "parse_model_ref",
    "part_name",
    "plan_parts",
    "plan_scoring",
    "predict",
    "resolve_model",
    "run_scoring",
    "scores_table",
    "scoring_service",
    "stream_parts",
]

_DRIVER = {
    "load_scoring_model": "_resolve",
    "resolve_model": "_resolve",
    "PartDone": "_run",
    "ScoringPlan": "_run",
    "ScoringReport": "_run",
    "default_output": "_run",
    "plan_scoring": "_run",
    "run_scoring": "_run",
    "stream_parts": "_run",
    "SCORING_SERVICE": "_service",
    "ScoringService": "_service",
    "ScoringServiceActor": "_service",
    "ScoringWorkerActor": "_service",
    "scoring_service": "_service",
}


def __getattr__(name: str) -> object:
    """The driver's names, imported on first use (they load Ray Data, the registry and
    MLflow's set-up, which the scoring workers never need)."""
    module = _DRIVER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
