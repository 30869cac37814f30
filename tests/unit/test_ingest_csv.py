"""CSV byte ranges: cut at line breaks, each read with the header, same rows as one read."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pytest

from entai.pipelines.ingest import CsvRangeDatasource, line_ranges, read_parts

FS = pafs.LocalFileSystem()
OPTIONS = pacsv.ConvertOptions(column_types={"id": pa.string(), "note": pa.string()})


def write_rows(path: Path, rows: int) -> Path:
    lines = ["id,note", *(f"r{i},{'x' * (i % 50)}" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ranges_end_at_line_breaks_and_cover_the_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.csv", 200_000)  # ~6 MB: room for four 1 MiB+ ranges
    data = path.read_bytes()
    header, spans = line_ranges(FS, str(path), 4)
    assert header == b"id,note\n"
    assert len(spans) == 4
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start and data[end - 1 : end] == b"\n"


def test_small_file_is_one_range(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "a.csv", 10)
    assert line_ranges(FS, str(path), 8)[1] == [(0, path.stat().st_size)]


def test_file_without_final_line_break(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,note\nr1,x")
    assert line_ranges(FS, str(path), 2) == (b"id,note\n", [(0, 12)])


def test_ranges_read_the_same_rows_as_one_read(tmp_path: Path) -> None:
    first = write_rows(tmp_path / "a.csv", 150_000)
    second = write_rows(tmp_path / "b.csv", 30)
    source = CsvRangeDatasource(FS, [str(first), str(second)], OPTIONS)
    tasks = source.get_read_tasks(4)
    assert len(tasks) == 5  # the large file cut in 4, the small one whole
    blocks = [block for task in tasks for block in task.read_fn()]
    whole = pa.concat_tables([pacsv.read_csv(p, convert_options=OPTIONS) for p in (first, second)])
    assert pa.concat_tables(blocks).equals(whole)
    assert source.estimate_inmemory_data_size() == first.stat().st_size + second.stat().st_size


@pytest.mark.parametrize(
    ("size", "cpus", "parts"),
    [(1, 2, 2), (60_000_000, 2, 2), (73_000_000, 2, 4), (200_000_000, 2, 6), (5, 1, 1)],
)
def test_read_parts_is_a_multiple_of_the_cores(size: int, cpus: int, parts: int) -> None:
    assert read_parts(size, cpus) == parts


def test_read_parts_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        read_parts(0, 2)
