"""Batch ingestion of files into the lake's raw zone, on Ray Data."""

from __future__ import annotations

from entai.pipelines.ingest._csv_ranges import (
    CsvRangeDatasource,
    line_ranges,
    read_parts,
)
from entai.pipelines.ingest._files import (
    IngestReport,
    ingest_file,
)
from entai.pipelines.ingest._staging import (
    StagedBatch,
    commit_staged,
    move_duplicates,
    reset_staging,
    stage_block,
    staged_batch,
    staging_dir,
)

__all__ = [
    "CsvRangeDatasource",
    "IngestReport",
    "StagedBatch",
    "commit_staged",
    "ingest_file",
    "line_ranges",
    "move_duplicates",
    "read_parts",
    "reset_staging",
    "stage_block",
    "staged_batch",
    "staging_dir",
]
