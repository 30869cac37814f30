"""The dataset a batch scoring reads, cut into deterministic parts.

:func:`open_input` finds the input's files (one file or a directory, local or any
``pyarrow.fs`` URI, or the id of an immutable dataset in the lake's ``datasets``
zone), its format (Parquet or CSV), its schema and a fingerprint of its files (names,
sizes and modification times: a rewritten input is noticed unless its size and time
are unchanged). :func:`plan_parts` cuts it into parts that depend only on the files
(Parquet: row ranges of ``part_rows``; CSV: ranges of whole lines of about
``part_bytes``), so a rerun plans the same parts and can skip those already written.
:class:`PartReader` reads one part's columns; it keeps the last row groups it read,
so the parts of one large row group cost one read per scoring actor.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from entai.shared.core import InvalidInputError
from entai.shared.data import Lake

__all__ = [
    "DEFAULT_PART_BYTES",
    "DEFAULT_PART_ROWS",
    "InputFile",
    "Part",
    "PartReader",
    "ScoringInput",
    "open_input",
    "plan_parts",
]

Format = Literal["parquet", "csv"]

DEFAULT_PART_ROWS = 100_000
DEFAULT_PART_BYTES = 16 << 20
_FORMATS: Mapping[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_HEADER_PROBE = 1 << 16
_QUOTED_ROW = re.compile(r"(got [0-9]+( columns)?):.*$")


@dataclass(frozen=True)
class InputFile:
    """One file of the input: its path in the input's filesystem, size and mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Part:
    """One unit of scoring and of resumption.

    Attributes:
        index: Position in the plan; names the output file.
        file: The input file it comes from.
        start: First row (Parquet) or byte (CSV) of the part.
        stop: One past its last row or byte.
    """

    index: int
    file: str
    start: int
    stop: int

    def to_json(self) -> dict[str, Any]:
        """The part as recorded in the scoring manifest."""
        return {"index": self.index, "file": self.file, "start": self.start, "stop": self.stop}


@dataclass(frozen=True)
class ScoringInput:
    """An opened input: where its files are, their format, schema and fingerprint.

    Attributes:
        uri: What the caller named (a path, URI or lake dataset id).
        location: The file or directory read (a lake dataset's directory for an id).
        fmt: ``parquet`` or ``csv``.
        files: The data files, sorted by path.
        schema: Column names and types (CSV: as inferred from the first file's start).
        fingerprint: ``sha256:`` over the files' names, sizes and times.
    """

    uri: str
    location: str
    fmt: Format
    files: tuple[InputFile, ...]
    schema: pa.Schema
    fingerprint: str

    @property
    def fs(self) -> pafs.FileSystem:
        """The filesystem the files are in."""
        return _filesystem(self.location)[0]


def _without_content(exc: BaseException) -> str:
    """The first line of an error, without the input row Arrow quotes after the reason."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return _QUOTED_ROW.sub(r"\1", first)[:300]


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, str(path)
    return pafs.LocalFileSystem(), uri


def _location(uri: str, lake: Lake | None) -> str:
    """The path or URI of the input: ``uri`` itself, else a lake dataset of that id."""
    try:
        fs, path = _filesystem(uri)
        found = fs.get_file_info(path).type != pafs.FileType.NotFound
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(
            f"input {uri} cannot be opened: {exc}", details={"field": "input", "uri": uri}
        ) from exc
    if found:
        return uri
    if lake is not None and "/" not in uri and lake.exists(lake.datasets(uri)):
        return lake.datasets(uri) if lake.is_local else f"{lake.root.rstrip('/')}/datasets/{uri}"
    raise InvalidInputError(
        f"input {uri} does not exist (neither a file, a directory nor a lake dataset id)",
        details={"field": "input", "uri": uri},
    )


def _files(uri: str, location: str) -> list[pafs.FileInfo]:
    fs, path = _filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        files = [info]
    else:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = [
            f
            for f in found
            if f.type == pafs.FileType.File
            and not any(p[:1] in "._" for p in f.path[len(path) :].split("/") if p)
            and f.extension
            and f".{f.extension.lower()}" in _FORMATS
        ]
    if not files:
        raise InvalidInputError(
            f"input {uri} holds no Parquet or CSV files", details={"field": "input", "uri": uri}
        )
    empty = [f.path for f in files if f.size == 0]
    if empty:
        raise InvalidInputError(
            f"input {uri}: empty file(s) {empty}", details={"field": "input", "uri": uri}
        )
    return sorted(files, key=lambda f: str(f.path))


def _format(uri: str, files: Sequence[pafs.FileInfo]) -> Format:
    kinds = {_FORMATS.get(f".{f.extension.lower()}") for f in files}
    if len(kinds) != 1 or None in kinds:
        raise InvalidInputError(
            f"input {uri}: its files must all be Parquet (.parquet) or all CSV (.csv)",
            details={"field": "input", "uri": uri},
        )
    kind = kinds.pop()
    assert kind is not None
    return kind


def _csv_header(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_file(path) as handle:
        size = handle.size()
        offset = 0
        while offset < size:
            chunk: bytes = handle.read_at(min(_HEADER_PROBE, size - offset), offset)
            found = chunk.find(b"\n")
            if found >= 0:
                return bytes(handle.read_at(offset + found + 1, 0))
            offset += len(chunk)
        return bytes(handle.read_at(size, 0))


def _schema(uri: str, fs: pafs.FileSystem, files: Sequence[str], fmt: Format) -> pa.Schema:
    """The input's schema; every file must have the first one's columns and types."""
    try:
        if fmt == "csv":
            with fs.open_input_stream(files[0]) as stream:
                schema = pacsv.open_csv(stream).schema
            # a column empty at the start of the file is read as text, not as nulls
            schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema]
            )
            for path in files[1:]:
                names = _csv_header(fs, path).decode("utf-8").strip().split(",")
                if names != schema.names:
                    raise InvalidInputError(
                        f"input {uri}: {path} has columns {names}, not {schema.names}",
                        details={"field": "input", "uri": uri, "file": path},
                    )
            return schema
        schemas = []
        for path in files:
            with fs.open_input_file(path) as handle:
                schemas.append(pq.read_schema(handle).remove_metadata())
    except InvalidInputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pa.ArrowException) as exc:
        first = _without_content(exc)
        raise InvalidInputError(
            f"input {uri} cannot be read as {fmt}: {first}",
            details={"field": "input", "uri": uri, "format": fmt},
        ) from exc
    for path, other in zip(files[1:], schemas[1:], strict=True):
        if not other.equals(schemas[0]):
            raise InvalidInputError(
                f"input {uri}: {path} has the schema {other}, not {schemas[0]}",
                details={"field": "input", "uri": uri, "file": path},
            )
    return schemas[0]


def _fingerprint(fmt: Format, base: str, files: Sequence[InputFile]) -> str:
    digest = hashlib.sha256(fmt.encode())
    for f in files:
        name = f.path[len(base) :] if f.path.startswith(base) else f.path
        digest.update(f"\0{name}\0{f.size}\0{f.mtime_ns}".encode())
    return "sha256:" + digest.hexdigest()


def open_input(uri: str, lake: Lake | None = None) -> ScoringInput:
    """Find and check the input's files; read only their schemas.

    Args:
        uri: A Parquet or CSV file, a directory of them (files starting ``.`` or ``_``
            are skipped), a ``pyarrow.fs`` URI, or a dataset id of ``lake``.
        lake: Where dataset ids are looked up.

    Raises:
        InvalidInputError: missing, empty, mixed formats, unreadable, or files whose
            columns differ.
    """
    location = _location(uri, lake)
    infos = _files(uri, location)
    fmt = _format(uri, infos)
    fs, base = _filesystem(location)
    files = tuple(InputFile(str(f.path), int(f.size), int(f.mtime_ns or 0)) for f in infos)
    schema = _schema(uri, fs, [f.path for f in files], fmt)
    return ScoringInput(
        uri=uri,
        location=location,
        fmt=fmt,
        files=files,
        schema=schema,
        fingerprint=_fingerprint(fmt, base, files),
    )


def _row_ranges(rows: int, part_rows: int) -> list[tuple[int, int]]:
    count = math.ceil(rows / part_rows)
    return [(k * rows // count, (k + 1) * rows // count) for k in range(count)]


def plan_parts(
    source: ScoringInput,
    *,
    part_rows: int = DEFAULT_PART_ROWS,
    part_bytes: int = DEFAULT_PART_BYTES,
) -> tuple[Part, ...]:
    """Cut the input into parts that depend only on its files and the part size.

    Parquet files are cut into equal row ranges of at most ``part_rows``; CSV files
    into ranges of whole lines of about ``part_bytes`` (at least 1 MiB each). Parts
    are numbered across files in path order.

    Raises:
        ValueError: a part size below 1.
    """
    if part_rows < 1 or part_bytes < 1:
        raise ValueError(f"part sizes must be >= 1, got {part_rows} rows, {part_bytes} bytes")
    # The planner's only use of the ingest package, which loads Ray Data and the
    # lake's staging: kept out of the scoring workers' import of this module.
    from entai.pipelines.ingest import line_ranges

    fs = source.fs
    spans: list[tuple[str, int, int]] = []
    for f in source.files:
        if source.fmt == "parquet":
            with fs.open_input_file(f.path) as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
            spans += [(f.path, a, b) for a, b in _row_ranges(rows, part_rows)]
        else:
            _, ranges = line_ranges(fs, f.path, max(1, math.ceil(f.size / part_bytes)))
            spans += [(f.path, a, b) for a, b in ranges]
    return tuple(Part(i, path, a, b) for i, (path, a, b) in enumerate(spans))


class PartReader:
    """Reads parts of one input, ``columns`` only (CSV: ``numeric`` columns as float64).

    Args:
        source: The opened input.
        columns: The columns to read.
        numeric: Columns read as float64 from CSV (the model's inputs).
    """

    def __init__(
        self, source: ScoringInput, columns: Sequence[str], numeric: Sequence[str] = ()
    ) -> None:
        self._source = source
        self._fs = source.fs
        self._columns = list(columns)
        types = {f.name: f.type for f in source.schema}
        types.update({name: pa.float64() for name in numeric})
        self._types = {name: types[name] for name in self._columns}
        self._cached: tuple[str, tuple[int, ...], int, pa.Table] | None = None

    def read(self, part: Part) -> pa.Table:
        """The part's rows, in file order."""
        if self._source.fmt == "csv":
            return self._read_csv(part)
        return self._read_parquet(part)

    def _read_csv(self, part: Part) -> pa.Table:
        with self._fs.open_input_file(part.file) as handle:
            data = handle.read_at(part.stop - part.start, part.start)
        document = data if part.start == 0 else _csv_header(self._fs, part.file) + data
        options = pacsv.ConvertOptions(
            column_types=self._types, include_columns=self._columns, strings_can_be_null=True
        )
        try:
            return pacsv.read_csv(io.BytesIO(document), convert_options=options)
        except pa.ArrowInvalid as exc:
            first = _without_content(exc)
            raise InvalidInputError(
                f"input {self._source.uri}: {part.file} bytes {part.start}-{part.stop} "
                f"cannot be read: {first}",
                details={"field": "input", "file": part.file, "part": part.index},
            ) from exc

    def _read_parquet(self, part: Part) -> pa.Table:
        cached = self._cached
        if cached is None or cached[0] != part.file or not _covers(cached, part):
            with self._fs.open_input_file(part.file) as handle:
                parquet = pq.ParquetFile(handle)
                groups, first = _row_groups(parquet.metadata, part.start, part.stop)
                table = parquet.read_row_groups(groups, columns=self._columns)
            cached = (part.file, tuple(groups), first, table)
            self._cached = cached
        _, _, first, table = cached
        return table.slice(part.start - first, part.stop - part.start)


def _covers(cached: tuple[str, tuple[int, ...], int, pa.Table], part: Part) -> bool:
    _, _, first, table = cached
    return first <= part.start and part.stop <= first + table.num_rows


def _row_groups(metadata: Any, start: int, stop: int) -> tuple[list[int], int]:
    """The row groups holding rows ``[start, stop)`` and the first row of the first one."""
    groups, first, offset = [], None, 0
    for i in range(metadata.num_row_groups):
        rows = metadata.row_group(i).num_rows
        if offset < stop and start < offset + rows:
            groups.append(i)
            first = offset if first is None else first
        offset += rows
    return groups, start if first is None else first
