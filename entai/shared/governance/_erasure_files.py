"""Erasure in the lake's files: find a subject's rows and rewrite only those files.

:class:`LakeZoneStore` is the erasure store of one or more lake zones (raw,
quarantine, offline tables, prediction logs); :func:`lake_traces` is the byte-level
scan that proves nothing of a subject is left anywhere in the lake.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from entai.shared.data import Lake
from entai.shared.governance._erasure import ENTITY_KEY_COLUMN, StoreReceipt, Subject

__all__ = ["LakeZoneStore", "datasets_with_subject", "lake_traces"]

_PARQUET, _JSONL = (".parquet", ".pq"), (".jsonl", ".ndjson")


# -- lake files ---------------------------------------------------------------------


def _walk(lake: Lake, directory: str, *, hidden: bool = False) -> Iterator[str]:
    selector = pafs.FileSelector(directory, recursive=True, allow_not_found=True)
    for info in lake.fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(directory) :].split("/")
        if hidden or not any(p[:1] in "._" for p in relative if p):
            yield info.path


def _read_parquet(lake: Lake, path: str, columns: Sequence[str] | None = None) -> pa.Table:
    with lake.fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        if columns is not None:
            columns = [c for c in columns if c in parquet.schema_arrow.names]
        return parquet.read(columns=columns)


def _jsonl_rows(data: bytes) -> tuple[list[bytes], pa.Table]:
    lines = [line for line in data.splitlines(keepends=True) if line.strip()]
    if not lines:
        return [], pa.table({})
    return lines, pajson.read_json(io.BytesIO(b"".join(lines)))


def _file_mask(lake: Lake, path: str, subject: Subject) -> pa.Array | None:
    """The subject's rows in one Parquet or JSON-lines file; None for other files."""
    if path.endswith(_PARQUET):
        wanted = [*subject.keys, ENTITY_KEY_COLUMN]
        return subject.row_mask(_read_parquet(lake, path, wanted))
    if path.endswith(_JSONL):
        return subject.row_mask(_jsonl_rows(lake.read_bytes(path))[1])
    return None


def _rewrite(lake: Lake, path: str, keep: pa.Array) -> bool:
    """Keep only the ``keep`` rows of a file, atomically; True if the file was deleted."""
    if not pc.any(keep).as_py():
        lake.fs.delete_file(path)
        return True
    if path.endswith(_PARQUET):
        table = _read_parquet(lake, path).filter(keep)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        lake.write_bytes(path, buffer.getvalue())
    else:
        lines = _jsonl_rows(lake.read_bytes(path))[0]
        kept = np.asarray(lines, dtype=object)[keep.to_numpy(zero_copy_only=False)]
        lake.write_bytes(path, b"".join(kept.tolist()))
    return False


class LakeZoneStore:
    """Erases a subject's rows from the Parquet and JSON-lines files under lake zones.

    Args:
        name: The store's name in receipts.
        lake: The lake.
        zones: Zone directories relative to the lake root (``offline``, ``raw``, ...).
    """

    def __init__(self, name: str, lake: Lake, zones: Sequence[str]) -> None:
        self.name = name
        self._lake = lake
        self._zones = tuple(zones)

    def __repr__(self) -> str:
        return f"LakeZoneStore({self.name!r}, zones={list(self._zones)})"

    def _files(self) -> Iterator[str]:
        for zone in self._zones:
            yield from _walk(self._lake, self._lake.path(zone))

    def erase(self, subject: Subject) -> StoreReceipt:
        """Rewrite only the files holding the subject; delete those left empty."""
        start = time.perf_counter()
        removed, rewritten, deleted, touched = 0, 0, 0, []
        for path in self._files():
            mask = _file_mask(self._lake, path, subject)
            hits = 0 if mask is None else int(pc.sum(mask).as_py() or 0)
            if not hits:
                continue
            assert mask is not None
            gone = _rewrite(self._lake, path, pc.invert(mask))
            removed += hits
            deleted += gone
            rewritten += not gone
            touched.append(path[len(self._lake.base) + 1 :])
        return StoreReceipt(
            store=self.name,
            status="erased" if removed else "clean",
            rows_removed=removed,
            files_rewritten=rewritten,
            files_deleted=deleted,
            touched=tuple(touched),
            seconds=round(time.perf_counter() - start, 4),
        )

    def scan(self, subject: Subject) -> int:
        """Rows of the subject left in the zones' files."""
        total = 0
        for path in self._files():
            mask = _file_mask(self._lake, path, subject)
            total += 0 if mask is None else int(pc.sum(mask).as_py() or 0)
        return total

    def find_tags(self, subject: Subject, column: str) -> set[str]:
        """Values of ``column`` (e.g. ``request_id``) on the subject's rows."""
        found: set[str] = set()
        for path in self._files():
            if not path.endswith(_PARQUET):
                continue
            table = _read_parquet(self._lake, path, [*subject.keys, ENTITY_KEY_COLUMN, column])
            if column in table.column_names:
                values = table.filter(subject.row_mask(table)).column(column)
                found |= {str(v) for v in values.to_pylist() if v is not None}
        return found


def datasets_with_subject(lake: Lake, subject: Subject) -> dict[str, int]:
    """Immutable datasets (``datasets/<id>/``) whose rows include the subject, with counts."""
    found: dict[str, int] = {}
    root = lake.path("datasets")
    for path in _walk(lake, root):
        if path.endswith(_PARQUET):
            hits = int(pc.sum(_file_mask(lake, path, subject)).as_py() or 0)
            if hits:
                dataset = path[len(root) + 1 :].split("/", 1)[0]
                found[dataset] = found.get(dataset, 0) + hits
    return found


def lake_traces(lake: Lake, subject: Subject) -> dict[str, int]:
    """Byte-level scan of every file in the lake (hidden ones too) for the subject.

    Parquet and JSON-lines files are decoded (their bytes are compressed): a trace is a
    row of the subject or a string cell holding its pseudonym or entity key. Every other
    file is searched as bytes for the pseudonym, the entity-key spellings, the known
    tags and JSON fields holding the raw value.

    Returns:
        Path relative to the lake root -> traces found, for files with any.
    """
    pattern = re.compile(subject.trace_pattern().encode())
    found: dict[str, int] = {}
    for path in _walk(lake, lake.base, hidden=True):
        if path.endswith(_PARQUET):
            count = subject.trace_count(_read_parquet(lake, path))
        else:
            data = lake.read_bytes(path)
            count = len(pattern.findall(data))
        if count:
            found[path[len(lake.base) + 1 :]] = count
    return found
