"""Batch scoring without Ray: model references, inputs, deterministic parts, reading
parts back, the output rows and one scoring actor's work run in-process."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost

import entai.pipelines.scoring as scoring_face
from entai.pipelines.scoring import (
    LINEAGE_COLUMNS,
    ModelRef,
    Part,
    PartReader,
    PartScorer,
    ScoringJob,
    ScoringModel,
    open_input,
    parse_model_ref,
    plan_parts,
    scores_table,
)
from entai.shared.core import InvalidInputError
from entai.shared.data import Lake

FEATURES = ("a", "b", "c")


def test_model_references_name_an_alias_or_a_version() -> None:
    assert parse_model_ref("churn") == ModelRef("churn")
    assert str(parse_model_ref("churn")) == "churn@champion"
    assert parse_model_ref("churn@challenger") == ModelRef("churn", alias="challenger")
    assert parse_model_ref(" churn/12 ") == ModelRef("churn", version=12)
    for bad in ("", "churn@", "churn/", "churn/v2", "a b", "churn@x/2", "churn/2@champion"):
        with pytest.raises(InvalidInputError, match="is not NAME, NAME@ALIAS or NAME/VERSION"):
            parse_model_ref(bad)


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=list(FEATURES))
    frame.insert(0, "user_id", np.arange(n, dtype=np.int64))
    return frame


def test_parquet_parts_are_equal_row_ranges_numbered_across_files(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _frame(25).to_parquet(tmp_path / "in" / "a.parquet")
    _frame(10).to_parquet(tmp_path / "in" / "b.parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / "manifest.json").write_text("{}")
    source = open_input(str(tmp_path / "in"))
    assert source.fmt == "parquet"
    assert [Path(f.path).name for f in source.files] == ["a.parquet", "b.parquet"]
    parts = plan_parts(source, part_rows=10)
    a, b = (str(tmp_path / "in" / name) for name in ("a.parquet", "b.parquet"))
    assert parts == (
        Part(0, a, 0, 8),
        Part(1, a, 8, 16),
        Part(2, a, 16, 25),
        Part(3, b, 0, 10),
    )
    assert plan_parts(open_input(str(tmp_path / "in")), part_rows=10) == parts


def test_parts_read_back_every_row_once_across_row_groups(tmp_path: Path) -> None:
    frame = _frame(50)
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "x.parquet", row_group_size=7
    )
    source = open_input(str(tmp_path / "x.parquet"))
    parts = plan_parts(source, part_rows=12)
    assert [(p.start, p.stop) for p in parts] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    reader = PartReader(source, ["user_id", "b"])
    read = pa.concat_tables([reader.read(p) for p in parts]).to_pandas()
    pd.testing.assert_frame_equal(read, frame[["user_id", "b"]])


def test_csv_parts_are_whole_lines_with_the_header_and_typed_once(tmp_path: Path) -> None:
    frame = _frame(60_000)
    frame["segment"] = np.where(frame["user_id"] % 2 == 0, "x", "y")
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    source = open_input(str(path))
    assert source.fmt == "csv" and source.schema.names == ["user_id", *FEATURES, "segment"]
    parts = plan_parts(source, part_bytes=1 << 20)
    assert len(parts) == path.stat().st_size // (1 << 20)
    assert parts[0].start == 0 and parts[-1].stop == path.stat().st_size
    assert all(p.stop == q.start for p, q in itertools.pairwise(parts))
    reader = PartReader(source, ["user_id", "segment", *FEATURES], numeric=FEATURES)
    read = pa.concat_tables([reader.read(p) for p in parts]).to_pandas()
    assert read["user_id"].tolist() == list(range(60_000))
    assert read["segment"].tolist() == frame["segment"].tolist()
    np.testing.assert_allclose(read[list(FEATURES)].to_numpy(), frame[list(FEATURES)].to_numpy())


def test_a_lake_dataset_id_is_an_input(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    root = Path(lake.datasets("ts-1"))
    root.mkdir(parents=True)
    _frame(5).to_parquet(root / "data.parquet")
    (root / "manifest.json").write_text("{}")
    source = open_input("ts-1", lake)
    assert source.location == str(root) and len(source.files) == 1


def _missing(d: Path) -> Path:
    return d / "missing.parquet"


def _empty_dir(d: Path) -> Path:
    (d / "empty").mkdir()
    (d / "empty" / "notes.txt").write_text("not data")
    return d / "empty"


def _empty_file(d: Path) -> Path:
    (d / "z.parquet").write_bytes(b"")
    return d / "z.parquet"


def _not_parquet(d: Path) -> Path:
    (d / "bad.parquet").write_bytes(b"not parquet at all")
    return d / "bad.parquet"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "missing.parquet does not exist"),
        (_empty_dir, "holds no Parquet or CSV files"),
        (_empty_file, "empty file"),
        (_not_parquet, "bad.parquet cannot be read as parquet"),
    ],
)
def test_unusable_inputs_are_clear_errors(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        open_input(str(make(tmp_path)))


def test_mixed_formats_and_differing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "mixed").mkdir()
    _frame(3).to_parquet(tmp_path / "mixed" / "a.parquet")
    _frame(3).to_csv(tmp_path / "mixed" / "b.csv", index=False)
    with pytest.raises(InvalidInputError, match=r"must all be Parquet \(.parquet\) or all CSV"):
        open_input(str(tmp_path / "mixed"))
    (tmp_path / "differ").mkdir()
    _frame(3).to_parquet(tmp_path / "differ" / "a.parquet")
    _frame(3).drop(columns="c").to_parquet(tmp_path / "differ" / "b.parquet")
    with pytest.raises(InvalidInputError, match=r"b\.parquet has the schema"):
        open_input(str(tmp_path / "differ"))


def test_the_fingerprint_changes_with_the_files(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    _frame(5).to_parquet(path)
    before = open_input(str(path)).fingerprint
    assert open_input(str(path)).fingerprint == before
    _frame(6).to_parquet(path)
    assert open_input(str(path)).fingerprint != before


def _model() -> tuple[ScoringModel, xgboost.Booster]:
    train = _frame(500, seed=1)
    label = (train["a"] + train["b"] > 0).astype(int)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgboost.DMatrix(train[list(FEATURES)], label=label),
        num_boost_round=8,
    )
    raw = bytes(booster.save_raw(raw_format="ubj"))
    return ScoringModel("churn", 3, FEATURES, raw, run_id="r1"), booster


def test_a_scorer_writes_the_models_own_predictions_with_lineage(tmp_path: Path) -> None:
    frame = _frame(30, seed=2)
    frame.loc[[4, 9], "b"] = np.nan  # XGBoost's missing values pass through
    frame = frame[["a", "user_id", "b", "c"]]  # the model's order is not the input's
    frame.to_parquet(tmp_path / "in.parquet")
    source = open_input(str(tmp_path / "in.parquet"))
    model, booster = _model()
    parts = plan_parts(source, part_rows=16)
    job = ScoringJob(model, source, parts, ("user_id",), str(tmp_path / "out"), "run-1")
    scorer = PartScorer(job)
    answered = scorer({"part": np.array([1])})
    assert answered["part"].tolist() == [1] and answered["rows"].tolist() == [15]
    scorer({"part": np.array([0])})
    out = pq.read_table(tmp_path / "out").to_pandas().sort_values("user_id")
    expected = booster.inplace_predict(frame[list(FEATURES)]).astype(np.float64)
    assert out["user_id"].tolist() == list(range(30))
    assert out["prediction"].to_numpy().tolist() == expected.tolist()
    assert list(out.columns) == ["user_id", "prediction", *LINEAGE_COLUMNS]
    assert set(out["model_name"]) == {"churn"} and set(out["model_version"]) == {3}
    assert set(out["scoring_run_id"]) == {"run-1"}
    assert set(out["input_dataset"]) == {str(tmp_path / "in.parquet")}
    assert str(out["created_timestamp"].dtype) == "datetime64[us, UTC]"


def test_scores_table_keeps_the_chosen_columns_in_order(tmp_path: Path) -> None:
    _frame(2).to_parquet(tmp_path / "in.parquet")
    source = open_input(str(tmp_path / "in.parquet"))
    model, _ = _model()
    job = ScoringJob(model, source, (), ("user_id",), str(tmp_path), "r")
    rows = pa.table({"user_id": [7, 8], "a": [0.0, 1.0]})
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    table = scores_table(job, rows, np.array([0.25, 0.5]), at)
    assert table.column_names == ["user_id", "prediction", *LINEAGE_COLUMNS]
    assert table.to_pylist()[1] == {
        "user_id": 8,
        "prediction": 0.5,
        "model_name": "churn",
        "model_version": 3,
        "scoring_run_id": "r",
        "input_dataset": str(tmp_path / "in.parquet"),
        "created_timestamp": at,
    }


_LOADED = """
import json, sys
import entai.pipelines.scoring._scorer
heavy = ("scipy", "mlflow", "ray", "entai.actors", "entai.shared.monitoring", "redis")
def loaded():
    return sorted(h for h in heavy if h in sys.modules)
worker = loaded()
from entai.pipelines.scoring import run_scoring
print(json.dumps({"worker": worker, "driver": loaded()}))
"""


def test_a_scoring_worker_imports_neither_the_registry_nor_monitoring_nor_ray() -> None:
    """The scorer's import path (the face included) loads no registry, platform actor,
    monitoring (scipy), MLflow or Ray; a driver name loads them on first use."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED], capture_output=True, text=True, check=True, timeout=300
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["worker"] == []
    assert {"ray", "entai.actors"} <= set(loaded["driver"])


def test_every_name_of_the_face_resolves() -> None:
    for name in scoring_face.__all__:
        assert getattr(scoring_face, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = scoring_face.nothing  # type: ignore[attr-defined]
