"""CSV inputs as a Ray Data datasource that reads each file in byte ranges.

Ray Data's ``read_csv`` reads a file in one task, so one large file keeps one core busy
while the others wait for its block. :class:`CsvRangeDatasource` cuts every file into
ranges that end at a line break and gives each range its own read task; a range other
than a file's first is read with the file's header line in front of it, so each task
parses a small, complete CSV document.

A line break always ends a row: the reader uses pyarrow's default parse options
(``newlines_in_values=False``), under which a quoted line break is a malformed row in
any case, so cutting at line breaks changes no file's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
from ray.data import DataContext
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

__all__ = ["CsvRangeDatasource", "line_ranges", "read_parts"]

_PROBE = 1 << 16
_MIN_RANGE = 1 << 20  # smaller files are one range: a task costs more than it saves
_RANGE_BYTES = 32 << 20  # upper bound per range: one range's tables stay in memory


def read_parts(total_bytes: int, cpus: int) -> int:
    """How many ranges to cut ``total_bytes`` of CSV into on ``cpus`` cores.

    A multiple of ``cpus`` (so no core idles through a last, lone range), each range at
    most about 32 MiB.
    """
    if total_bytes <= 0 or cpus < 1:
        raise ValueError(f"need positive bytes and cores, got {total_bytes}, {cpus}")
    return cpus * math.ceil(total_bytes / (cpus * _RANGE_BYTES))


def _next_line(handle: pafs.NativeFile, offset: int, size: int) -> int:
    """The offset just after the first line break at or after ``offset`` (or ``size``)."""
    while offset < size:
        chunk: bytes = handle.read_at(min(_PROBE, size - offset), offset)
        found = chunk.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(chunk)
    return size


def line_ranges(fs: pafs.FileSystem, path: str, parts: int) -> tuple[bytes, list[tuple[int, int]]]:
    """A file's header line and up to ``parts`` ``[start, end)`` ranges of whole lines.

    The first range starts at 0 and so holds the header itself; ranges are at least
    1 MiB unless the file is smaller.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    with fs.open_input_file(path) as handle:
        size = handle.size()
        body = _next_line(handle, 0, size)
        header = handle.read_at(body, 0)
        count = max(1, min(parts, (size - body) // _MIN_RANGE))
        cuts = [body + (size - body) * k // count for k in range(1, count)]
        ends = sorted({_next_line(handle, cut - 1, size) for cut in cuts} - {size})
    starts = [0, *ends]
    return header, list(zip(starts, [*ends, size], strict=True))


def _read_range(
    fs: pafs.FileSystem,
    path: str,
    header: bytes,
    span: tuple[int, int],
    options: pacsv.ConvertOptions,
) -> Iterable[pa.Table]:
    start, end = span
    with fs.open_input_file(path) as handle:
        data = handle.read_at(end - start, start)
    document = data if start == 0 else header + data
    yield pacsv.read_csv(pa.BufferReader(document), convert_options=options)


class CsvRangeDatasource(Datasource):
    """Every CSV file of an input, read in ranges of whole lines, one task per range."""

    def __init__(
        self, fs: pafs.FileSystem, files: list[str], options: pacsv.ConvertOptions
    ) -> None:
        """Read ``files`` (paths in ``fs``), converting columns with ``options``."""
        super().__init__()  # type: ignore[no-untyped-call]
        self._fs = fs
        self._files = files
        self._options = options
        self._sizes = [fs.get_file_info(path).size for path in files]

    def estimate_inmemory_data_size(self) -> int:
        """The files' total size: strings take about their text's bytes."""
        return sum(self._sizes)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: DataContext | None = None,
    ) -> list[ReadTask]:
        """About ``parallelism`` tasks in all, shared by the files in proportion to size."""
        total = sum(self._sizes)
        tasks: list[ReadTask] = []
        for path, size in zip(self._files, self._sizes, strict=True):
            parts = max(1, round(parallelism * size / total))
            header, spans = line_ranges(self._fs, path, parts)
            for span in spans:
                metadata = BlockMetadata(
                    num_rows=None,
                    size_bytes=span[1] - span[0],
                    input_files=(path,),
                    exec_stats=None,
                )
                read = partial(_read_range, self._fs, path, header, span, self._options)
                tasks.append(ReadTask(read, metadata, per_task_row_limit=per_task_row_limit))
        return tasks
