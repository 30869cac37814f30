"""Where ingestion writes: per-block staging on the workers, then one commit.

Each validation task writes its own block's accepted rows (one Parquet file per event
date) and quarantined rows into ``_staging/ingest/<batch_id>/`` and returns only a
one-row summary: counts, the files it staged, the quarantine rules, the PII it found in
columns the contract stores in the clear (per column and kind), and its accepted
rows' key columns with the file and row each was staged at. Blocks leave the key's
uniqueness alone: the driver checks it once over every block's keys (the same hashing
per key as a block would do), rewrites the few staged files that hold a later
duplicate, then moves every staged file into place (:func:`commit_staged`).
The driver never holds the data.

Staged names carry the batch id and a per-block id, so two blocks never write the
same file and a re-run of a crashed batch replaces, through the staged intent, what
the crashed run had already moved.

A worker process keeps one :class:`~entai.shared.data._masking.Pseudonymiser` per ingestion
run (the run id is new for every ``ingest_file`` call): the blocks it validates share
the ids it already hashed, and the next run starts afresh.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from entai.shared.data import (
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_RULE,
    ColumnType,
    DataContract,
    Lake,
    PiiCounts,
    Pseudonymiser,
    UndeclaredPii,
    check_batch,
    coerce_column,
    merge_pii_counts,
    quarantine_schema,
    repeated_keys,
)

__all__ = [
    "StagedBatch",
    "commit_staged",
    "move_duplicates",
    "reset_staging",
    "stage_block",
    "staged_batch",
    "staging_dir",
]

_FILE = "_entai_file"
_ROW = "_entai_row"
_SAMPLE_ROWS = 4096  # rows looked at to decide a column's Parquet dictionary encoding
_RUN_PSEUDONYMISER: dict[str, Pseudonymiser] = {}  # this worker's, for one run id
SUMMARY_SCHEMA = pa.schema(
    [
        ("rows_in", pa.int64()),
        ("accepted", pa.int64()),
        ("quarantined", pa.int64()),
        ("files", pa.list_(pa.string())),
        ("rules", pa.string()),
        ("pii", pa.string()),
        ("keys", pa.binary()),
    ]
)


def staging_dir(lake: Lake, batch_id: str) -> str:
    """The batch's staging directory under the lake."""
    return lake.path("_staging", "ingest", batch_id)


def _intent(lake: Lake, batch_id: str) -> str:
    return f"{staging_dir(lake, batch_id)}/_intent.json"


def reset_staging(lake: Lake, batch_id: str) -> None:
    """Undo a crashed commit of this batch (its moved files), then empty its staging."""
    intent = _intent(lake, batch_id)
    if lake.exists(intent):
        for rel in json.loads(lake.read_bytes(intent)):
            if lake.exists(lake.path(rel)):
                lake.fs.delete_file(lake.path(rel))
    if lake.exists(staging_dir(lake, batch_id)):
        lake.fs.delete_dir(staging_dir(lake, batch_id))


def _repetitive(table: pa.Table) -> list[str]:
    """Columns whose first rows repeat values: Parquet dictionary encoding pays there.

    On the others (keys, timestamps, pseudonyms of ids) building the dictionary costs
    time and Parquet falls back to plain encoding anyway.
    """
    head = table.slice(0, _SAMPLE_ROWS)
    return [
        name
        for name, column in zip(head.column_names, head.columns, strict=True)
        if pc.count_distinct(column, mode="all").as_py() * 2 <= max(head.num_rows, 1)
    ]


def _write(lake: Lake, batch_id: str, rel: str, table: pa.Table) -> None:
    path = f"{staging_dir(lake, batch_id)}/{rel}"
    lake.makedirs(path.rsplit("/", 1)[0])
    pq.write_table(table, path, filesystem=lake.fs, use_dictionary=_repetitive(table))


@dataclass(frozen=True)
class _Days:
    """A block's accepted rows grouped by event date, each date one slice of ``rows``."""

    days: list[str]  # ISO dates
    rows: pa.Table  # sorted by date, input order within a date
    day: np.ndarray  # per input row: its date's index in ``days``
    at: np.ndarray  # per input row: its row within its date's slice
    starts: np.ndarray  # per date: its slice's first row in ``rows``
    counts: np.ndarray  # per date: its slice's rows

    @classmethod
    def of(cls, accepted: pa.Table, event_time: str) -> _Days:
        dates = pc.cast(accepted.column(event_time), pa.date32()).combine_chunks()
        encoded = dates.dictionary_encode()
        day = encoded.indices.to_numpy()
        order = pc.sort_indices(encoded.indices).to_numpy()  # stable
        counts = np.bincount(day, minlength=len(encoded.dictionary))
        starts = np.cumsum(counts) - counts
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.arange(order.size)
        return cls(
            days=[d.isoformat() for d in encoded.dictionary.to_pylist()],
            rows=accepted.take(pa.array(order)),
            day=day,
            at=position - starts[day],
            starts=starts,
            counts=counts,
        )

    def slices(self) -> list[tuple[str, pa.Table]]:
        """Each date with its rows."""
        return [
            (day, self.rows.slice(int(start), int(rows)))
            for day, start, rows in zip(self.days, self.starts, self.counts, strict=True)
        ]


def _pseudonymiser(run_id: str, key: bytes) -> Pseudonymiser:
    """This process's pseudonymiser for ``run_id`` (forgetting any earlier run's)."""
    found = _RUN_PSEUDONYMISER.get(run_id)
    if found is None or not found.uses_key(key):
        _RUN_PSEUDONYMISER.clear()
        found = _RUN_PSEUDONYMISER[run_id] = Pseudonymiser(key)
    return found


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def stage_block(
    batch: pa.Table,
    *,
    contract: DataContract,
    hmac_key: bytes,
    batch_id: str,
    lake_root: str,
    run_id: str,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> pa.Table:
    """Validate, mask and stage one block; return its one-row summary.

    ``run_id`` names the ingestion run: blocks of one run in one worker process share
    a pseudonymiser. ``undeclared_pii`` is what PII found in a column stored in the
    clear does (quarantine the row or redact the finding).
    """
    checked = check_batch(
        batch,
        contract,
        hmac_key,
        batch_id=batch_id,
        pseudonymiser=_pseudonymiser(run_id, hmac_key),
        unique_key=False,
        undeclared_pii=undeclared_pii,
    )
    accepted, quarantined = checked.accepted, checked.quarantined
    lake = Lake(lake_root)
    name = f"part-{batch_id}-{uuid.uuid4().hex[:12]}.parquet"
    files: list[str] = []
    keys = pa.table({})
    if accepted.num_rows:
        by_day = _Days.of(accepted, contract.event_time)
        for day, rows in by_day.slices():
            rel = f"raw/{contract.source}/date={day}/{name}"
            _write(lake, batch_id, rel, rows)
            files.append(rel)
        if contract.key:
            # In input order, each key with the raw file it was staged in (dictionary:
            # one name per day) and its row there.
            staged_in = pa.DictionaryArray.from_arrays(pa.array(by_day.day), pa.array(files))
            keys = (
                accepted.select(list(contract.key))
                .append_column(_FILE, staged_in)
                .append_column(_ROW, pa.array(by_day.at))
            )
    if quarantined.num_rows:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        rel = f"quarantine/{contract.source}/date={today}/{name}"
        _write(lake, batch_id, rel, quarantined)
        files.append(rel)
    rules = Counter(quarantined.column(QUARANTINE_RULE).to_pylist())
    row = {
        "rows_in": [batch.num_rows],
        "accepted": [accepted.num_rows],
        "quarantined": [quarantined.num_rows],
        "files": [files],
        "rules": [json.dumps(dict(rules))],
        "pii": [json.dumps(checked.pii_findings)],
        "keys": [_ipc(keys) if keys.num_columns else b""],
    }
    return pa.table(row, schema=SUMMARY_SCHEMA)


@dataclass
class StagedBatch:
    """What the blocks staged, summed; ``rows_in == accepted + quarantined``."""

    rows_in: int = 0
    accepted: int = 0
    quarantined: int = 0
    files: list[str] = field(default_factory=list)
    rules: Counter[str] = field(default_factory=Counter)
    pii_findings: PiiCounts = field(default_factory=dict)
    keys: list[pa.Table] = field(default_factory=list)


def staged_batch(summaries: Sequence[pa.Table]) -> StagedBatch:
    """Sum the blocks' summaries (in block order), keys with the raw file of each."""
    out = StagedBatch()
    for summary in summaries:
        for row in summary.to_pylist():
            out.rows_in += row["rows_in"]
            out.accepted += row["accepted"]
            out.quarantined += row["quarantined"]
            out.files += row["files"]
            out.rules.update(json.loads(row["rules"]))
            out.pii_findings = merge_pii_counts([out.pii_findings, json.loads(row["pii"])])
            if row["keys"]:
                out.keys.append(pa.ipc.open_stream(row["keys"]).read_all())
    return out


def move_duplicates(lake: Lake, staged: StagedBatch, contract: DataContract, batch_id: str) -> int:
    """Quarantine accepted rows whose key appeared in an earlier row; returns how many.

    Earlier means in input order: blocks in order, rows in order within a block.
    """
    if not staged.keys:
        return 0
    keys = pa.concat_tables(staged.keys)
    repeated = repeated_keys(keys.select(list(contract.key)))
    if not repeated.any():
        return 0
    later = keys.filter(pa.array(repeated))
    later = later.set_column(
        later.column_names.index(_FILE), _FILE, pc.cast(later.column(_FILE), pa.string())
    )
    moved: list[pa.Table] = []
    for rel in sorted(set(later.column(_FILE).to_pylist())):
        rows = later.filter(pc.equal(later.column(_FILE), rel)).column(_ROW).to_numpy()
        path = f"{staging_dir(lake, batch_id)}/{rel}"
        table = pq.read_table(path, filesystem=lake.fs)
        hit = np.zeros(table.num_rows, dtype=bool)
        hit[rows] = True
        moved.append(table.filter(pa.array(hit)))
        kept = table.filter(pa.array(~hit))
        lake.fs.delete_file(path)
        if kept.num_rows:
            _write(lake, batch_id, rel, kept)
        else:
            staged.files.remove(rel)
    duplicates = _as_quarantine(pa.concat_tables(moved), contract)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    rel = f"quarantine/{contract.source}/date={today}/part-{batch_id}-duplicates.parquet"
    _write(lake, batch_id, rel, duplicates)
    staged.files.append(rel)
    staged.accepted -= duplicates.num_rows
    staged.quarantined += duplicates.num_rows
    staged.rules["unique"] += duplicates.num_rows
    return int(duplicates.num_rows)


def _as_quarantine(moved: pa.Table, contract: DataContract) -> pa.Table:
    label = ",".join(contract.key)
    schema = quarantine_schema(contract)
    columns: dict[str, Any] = {
        f.name: coerce_column(moved.column(f.name), ColumnType.STRING)
        for f in schema
        if f.name in moved.column_names
    }
    columns[QUARANTINE_RULE] = pa.repeat(pa.scalar("unique"), moved.num_rows)
    columns[QUARANTINE_COLUMN] = pa.repeat(pa.scalar(label), moved.num_rows)
    reason = f"unique({label}): duplicate of an earlier row"
    columns[QUARANTINE_REASON] = pa.repeat(pa.scalar(reason), moved.num_rows)
    return pa.table(columns).select(schema.names).cast(schema)


def commit_staged(lake: Lake, staged: StagedBatch, batch_id: str) -> list[str]:
    """Record the intent, then move every staged file into place; the final paths."""
    files = sorted(staged.files)
    lake.write_json(_intent(lake, batch_id), files)
    for rel in files:
        lake.makedirs(lake.path(rel).rsplit("/", 1)[0])
        lake.fs.move(f"{staging_dir(lake, batch_id)}/{rel}", lake.path(rel))
    return files
