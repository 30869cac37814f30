"""Batch scoring: Ray Data's actor pool, the platform's scoring service (its workers
outlive the driver that started it and score every later run, with the same outputs),
and a resumed run finished by the service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xgboost
from governed import Governed
from logged_models import log_small_model

from entai.actors.core import LocalService
from entai.pipelines.scoring import (
    PartScorer,
    ScoringPlan,
    plan_scoring,
    run_scoring,
    scoring_service,
)
from entai.shared.core import InvalidInputError
from entai.shared.settings import EntaiSettings, load_settings

FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> tuple[EntaiSettings, Any, Path]:
    """Settings over a tmp home, a registry holding model ``m`` v1, and its input:
    5,000 rows (user id, the model's inputs in another order, a segment)."""
    root = tmp_path_factory.mktemp("scoring")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENTAI_HOME", str(root / "home"))
        settings = load_settings().resolved()
    rng = np.random.default_rng(5)
    train = pd.DataFrame(rng.normal(size=(300, 3)), columns=FEATURES)
    logged = log_small_model(settings, train, (train["a"] > train["b"]).astype(int), rounds=4)
    governed = Governed(settings)
    registry = governed.registry()
    governed.register_logged(logged, "m", registry=registry)
    frame = pd.DataFrame(rng.normal(size=(5_000, 3)), columns=["c", "a", "b"])
    frame.insert(0, "user_id", np.arange(5_000, dtype=np.int64))
    frame["segment"] = np.where(frame["user_id"] % 3 == 0, "x", "y")
    frame.to_parquet(root / "input.parquet")
    return settings, LocalService(registry), root / "input.parquet"


def _plan(scoring: tuple[EntaiSettings, Any, Path], out: Path) -> ScoringPlan:
    settings, registry, source = scoring
    return plan_scoring(settings, registry, "m/1", str(source), str(out), part_rows=1_000)


def _expected(plan: ScoringPlan, source: Path) -> np.ndarray:
    booster = xgboost.Booster(model_file=bytearray(plan.job.model.raw))
    frame = pd.read_parquet(source)
    return np.asarray(booster.inplace_predict(frame[FEATURES].to_numpy(np.float32)), np.float64)


def _scores(out: Path) -> pd.DataFrame:
    return pq.read_table(out).to_pandas().sort_values("user_id", ignore_index=True)


_START_SERVICE = """
import sys

import ray

from entai.actors.core import connect_ray
from entai.pipelines.scoring import scoring_service
from entai.shared.settings import load_settings

settings = load_settings(home=sys.argv[2])
connect_ray(settings, address=sys.argv[1])
print(ray.get(scoring_service(settings, workers=2).ready.remote()))
"""


def _worker_pids(service: Any) -> list[int]:
    import ray

    workers = ray.get(service.__ray_call__.remote(lambda s: s._workers))
    return [ray.get(w.__ray_call__.remote(lambda _: os.getpid())) for w in workers]


def test_the_service_started_by_an_exited_driver_scores_on_the_same_workers_each_run(
    ray_cluster: Any, scoring: tuple[EntaiSettings, Any, Path], tmp_path: Path
) -> None:
    """As ``entai up`` then separate ``entai score`` commands: the driver that starts
    the service exits; every later run is scored by the workers it started."""
    settings, _, source = scoring
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            _START_SERVICE,
            ray_cluster.get_runtime_context().gcs_address,
            str(settings.home),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert started.returncode == 0, started.stderr[-2000:]
    assert started.stdout.strip().splitlines()[-1] == "2"  # its two workers, started
    service = scoring_service(settings)
    pids = _worker_pids(service)
    assert len(set(pids)) == 2

    cold = _plan(scoring, tmp_path / "pool")
    pool_report = run_scoring(cold, actors=2)
    assert pool_report.parts_scored == 5 and pool_report.rows == 5_000
    by_pool = _scores(tmp_path / "pool")
    assert by_pool["prediction"].tolist() == _expected(cold, source).tolist()

    outputs, run_ids, done = [], [], []
    for name in ("service-1", "service-2"):
        plan = _plan(scoring, tmp_path / name)
        report = run_scoring(
            plan,
            actors=2,
            service=scoring_service(settings),
            on_part_done=lambda i, _rows: done.append(i),  # the progress bar's calls
        )
        assert report.rows == 5_000 and report.parts_scored == 5
        outputs.append(_scores(tmp_path / name))
        run_ids.append(report.run_id)
        assert _worker_pids(service) == pids  # no worker started or restarted
    assert sorted(done) == sorted([0, 1, 2, 3, 4] * 2)

    first, second = outputs
    assert first["prediction"].tolist() == by_pool["prediction"].tolist()
    assert second["prediction"].tolist() == first["prediction"].tolist()
    lineage = ["user_id", "segment", "model_name", "model_version", "input_dataset"]
    pd.testing.assert_frame_equal(first[lineage], by_pool[lineage])
    pd.testing.assert_frame_equal(second[lineage], first[lineage])
    assert [set(o["scoring_run_id"]) for o in outputs] == [{run_ids[0]}, {run_ids[1]}]
    assert run_ids[0] != run_ids[1]


def test_the_service_finishes_an_interrupted_run(
    ray_cluster: Any, scoring: tuple[EntaiSettings, Any, Path], tmp_path: Path
) -> None:
    settings, _, source = scoring
    out = tmp_path / "out"
    first = _plan(scoring, out)
    scorer = PartScorer(first.job)  # the first attempt wrote parts 0 and 3, then stopped
    scorer({"part": np.array([0, 3])})
    resumed = _plan(scoring, out)
    assert resumed.resumption.resumed and [p.index for p in resumed.todo] == [1, 2, 4]
    report = run_scoring(resumed, service=scoring_service(settings))
    assert report.parts_scored == 3 and report.rows == 5_000 and report.resumed
    manifest = resumed.resumption.manifest
    assert manifest["attempts"] == 2 and report.run_id == first.job.run_id
    scores = _scores(out)
    assert scores["user_id"].tolist() == list(range(5_000))
    assert scores["prediction"].tolist() == _expected(first, source).tolist()
    assert set(scores["scoring_run_id"]) == {first.job.run_id}
    assert run_scoring(_plan(scoring, out), service=scoring_service(settings)).parts_scored == 0


def test_a_bad_part_fails_a_service_run_with_our_one_error(
    ray_cluster: Any, scoring: tuple[EntaiSettings, Any, Path], tmp_path: Path
) -> None:
    settings, registry, _ = scoring
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(rng.normal(size=(40_000, 3)), columns=FEATURES)
    frame.insert(0, "user_id", np.arange(40_000))
    frame.to_csv(tmp_path / "in.csv", index=False)
    with (tmp_path / "in.csv").open("a") as handle:  # past what planning reads of it
        handle.write("40000,oops,1.0,2.0\n")
    plan = plan_scoring(settings, registry, "m/1", str(tmp_path / "in.csv"), str(tmp_path / "o"))
    with pytest.raises(
        InvalidInputError, match=r"in\.csv bytes [0-9]+-[0-9]+ cannot be read: "
    ) as raised:
        run_scoring(plan, service=scoring_service(settings))
    assert type(raised.value) is InvalidInputError
