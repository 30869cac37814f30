"""The resume bookkeeping of a batch scoring: a run starts once, a rerun scores only the
parts without a file, and anything that would mix two scorings is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from entai.pipelines.scoring import (
    MANIFEST,
    Part,
    ScoringOutput,
    begin_run,
    finish_run,
    part_name,
)
from entai.shared.core import ConflictError

PARTS = tuple(Part(i, "/in/x.parquet", 10 * i, 10 * i + 10) for i in range(4))
IDENTITY: dict[str, Any] = {
    "model": "churn",
    "model_version": 3,
    "input_fingerprint": "sha256:abc",
    "features": ["a", "b"],
}
LINEAGE = {"input": "/in", "model_reference": "churn@champion"}


def _rows(n: int) -> pa.Table:
    return pa.table({"user_id": list(range(n)), "prediction": [0.5] * n})


def test_a_new_run_plans_every_part_and_records_its_lineage(tmp_path: Path) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    run = begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    assert run.todo == PARTS and not run.resumed
    manifest = output.manifest()
    assert manifest is not None
    assert manifest["status"] == "running" and manifest["attempts"] == 1
    assert manifest["run_id"] == run.run_id and len(run.run_id) == 32
    assert manifest["input"] == "/in" and manifest["model_version"] == 3
    assert manifest["parts"][2] == {"index": 2, "file": "/in/x.parquet", "start": 20, "stop": 30}
    assert "created_timestamp" in manifest


def test_a_rerun_scores_only_the_missing_parts_of_the_same_run(tmp_path: Path) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    first = begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    output.write_part(0, _rows(10))
    output.write_part(2, _rows(10))
    (tmp_path / "out" / ".tmp-left-by-a-killed-writer").write_bytes(b"half")
    again = begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    assert [p.index for p in again.todo] == [1, 3] and again.resumed
    assert again.run_id == first.run_id
    assert again.manifest["attempts"] == 2
    assert not (tmp_path / "out" / ".tmp-left-by-a-killed-writer").exists()
    with pytest.raises(ConflictError, match=r"parts \[1, 3\] are not written; rerun"):
        finish_run(output, again.manifest)
    output.write_part(1, _rows(10))
    output.write_part(3, _rows(7))
    done = finish_run(output, again.manifest)
    assert done["status"] == "complete" and done["rows"] == 37
    assert output.manifest() == done
    last = begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    assert last.todo == () and last.manifest["status"] == "complete"
    assert last.manifest["attempts"] == 2  # nothing to do: not another attempt


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model_version": 4}, "model_version"),
        ({"input_fingerprint": "sha256:def"}, "input_fingerprint"),
        ({"features": ["a"]}, "features"),
    ],
)
def test_another_scoring_in_the_output_is_a_conflict(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    output.write_part(0, _rows(10))
    with pytest.raises(ConflictError, match=f"differs in {named}; pass --restart") as raised:
        begin_run(output, {**IDENTITY, **change}, PARTS, lineage=LINEAGE)
    assert "churn v3 of /in" in raised.value.message
    assert output.finished() == {0}  # nothing was touched


def test_another_plan_is_a_conflict(tmp_path: Path) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    with pytest.raises(ConflictError, match="differs in parts"):
        begin_run(output, IDENTITY, PARTS[:2], lineage=LINEAGE)


def test_restart_discards_the_earlier_attempt(tmp_path: Path) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    first = begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    output.write_part(1, _rows(10))
    other = {**IDENTITY, "model_version": 4}
    fresh = begin_run(output, other, PARTS, lineage=LINEAGE, restart=True)
    assert fresh.todo == PARTS and fresh.run_id != first.run_id
    assert output.finished() == set()


def test_an_output_that_is_not_a_scorings_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "important.csv").write_text("x\n1\n")
    with pytest.raises(ConflictError, match=r"not empty \(important.csv\) .*another --output"):
        begin_run(ScoringOutput(str(tmp_path / "out")), IDENTITY, PARTS, lineage=LINEAGE)
    assert not (tmp_path / "out" / MANIFEST).exists()
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / part_name(0)).write_bytes(b"x")
    with pytest.raises(ConflictError, match=r"part-00000\.parquet"):
        begin_run(ScoringOutput(str(tmp_path / "parts")), IDENTITY, PARTS, lineage=LINEAGE)


def test_parts_outside_the_plan_are_a_conflict(tmp_path: Path) -> None:
    output = ScoringOutput(str(tmp_path / "out"))
    begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
    output.write_part(9, _rows(1))
    with pytest.raises(ConflictError, match=r"parts \[9\] outside its plan"):
        begin_run(output, IDENTITY, PARTS, lineage=LINEAGE)
