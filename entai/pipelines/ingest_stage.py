"""Where ingestion writes: per-block staging on the workers, then one commit.

Each validation task writes its own block's accepted rows (one Parquet file per event
date) and quarantined rows into ``_staging/ingest/<batch_id>/`` and returns only a
one-row summary: counts, the files it staged, the quarantine rules, and its accepted
rows' key columns (for the contract's uniqueness, which a block can only check
alone). The driver never holds the data: it checks uniqueness across blocks on the
keys, rewrites the few staged files that hold a later duplicate, then moves every
staged file into place (:func:`commit_staged`).

Staged names carry the batch id and a per-block id, so two blocks never write the
same file and a re-run of a crashed batch replaces, through the staged intent, what
the crashed run had already moved.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from entai.shared.contracts import ColumnType, DataContract
from entai.shared.lake import Lake
from entai.shared.validation import (
    QUARANTINE_COLUMN,
    QUARANTINE_REASON,
    QUARANTINE_RULE,
    coerce_column,
    quarantine_schema,
    repeated_keys,
    validate_and_mask,
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
SUMMARY_SCHEMA = pa.schema(
    [
        ("rows_in", pa.int64()),
        ("accepted", pa.int64()),
        ("quarantined", pa.int64()),
        ("files", pa.list_(pa.string())),
        ("rules", pa.string()),
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


def _write(lake: Lake, batch_id: str, rel: str, table: pa.Table) -> None:
    path = f"{staging_dir(lake, batch_id)}/{rel}"
    lake.makedirs(path.rsplit("/", 1)[0])
    pq.write_table(table, path, filesystem=lake.fs)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def stage_block(
    batch: pa.Table, *, contract: DataContract, hmac_key: bytes, batch_id: str, lake_root: str
) -> pa.Table:
    """Validate, mask and stage one block; return its one-row summary."""
    accepted, quarantined = validate_and_mask(batch, contract, hmac_key, batch_id=batch_id)
    lake = Lake(lake_root)
    name = f"part-{batch_id}-{uuid.uuid4().hex[:12]}.parquet"
    files: list[str] = []
    keys = pa.table({})
    if accepted.num_rows:
        dates = pc.cast(accepted.column(contract.event_time), pa.date32()).combine_chunks()
        encoded = dates.dictionary_encode()
        for index, day in enumerate(encoded.dictionary.to_pylist()):
            rel = f"raw/{contract.source}/date={day.isoformat()}/{name}"
            _write(lake, batch_id, rel, accepted.filter(pc.equal(encoded.indices, index)))
            files.append(rel)
        if contract.key:
            # Each key row names the raw file it was staged in (dictionary: one name per day).
            staged_in = pa.DictionaryArray.from_arrays(encoded.indices, pa.array(files))
            keys = accepted.select(list(contract.key)).append_column(_FILE, staged_in)
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
            if row["keys"]:
                out.keys.append(pa.ipc.open_stream(row["keys"]).read_all())
    return out


def move_duplicates(lake: Lake, staged: StagedBatch, contract: DataContract, batch_id: str) -> int:
    """Quarantine accepted rows whose key appeared in an earlier block; returns how many.

    Blocks checked uniqueness alone, so a key repeats within the staged files of one
    block at most once: filtering a file by the repeated keys is exact.
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
        mine = later.filter(pc.equal(later.column(_FILE), rel)).select(list(contract.key))
        path = f"{staging_dir(lake, batch_id)}/{rel}"
        table = pq.read_table(path, filesystem=lake.fs)
        hit = _member(table.select(list(contract.key)), mine)
        moved.append(table.filter(hit))
        kept = table.filter(pc.invert(hit))
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


def _member(keys: pa.Table, wanted: pa.Table) -> pa.ChunkedArray:
    """True where a row of ``keys`` equals some row of ``wanted`` on every column."""
    both = pa.concat_tables([wanted.cast(keys.schema), keys])
    repeated = repeated_keys(both)[wanted.num_rows :]
    return pa.chunked_array([pa.array(repeated)])


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
