"""Benchmark: 1,000,000 rows scored by ``entai score``'s pipeline vs a pandas + XGBoost loop.

Both score the same Parquet file (user id, event time, 20 numeric features) with the
same registered XGBoost model (binary:logistic, --trees trees of depth --depth) and
write the same output: the non-feature columns, ``prediction`` and the lineage
columns (model name and version, run id, input, created timestamp) as Parquet.

entai: ``plan_scoring`` + ``run_scoring``, i.e. ``entai score``'s pipeline (resolve the
alias in the registry, load the model from MLflow, plan parts of 100,000 rows, score
them on Ray Data with 2 workers, one file per part), timed from the call to the
manifest marked complete, on a local Ray (num_cpus=2) started beforehand, as a
platform would be. Three ways, in this order:
- ``pool``: a fresh pool of 2 scoring actors (``entai score`` with no platform up); the
  pool starts inside the timed run;
- ``cold``: the platform's scoring service, started by this first run (the service and
  its task workers start and import inside the timed run);
- ``warm``: the same service again (``entai score`` against a running platform from its
  second run on): its Ray Data task workers are the processes of the earlier runs.
Reference: one process loads the model from MLflow, reads the file with pandas and,
chunk by chunk (100,000 rows), predicts with XGBoost (its default threads: every core)
and appends the rows to one Parquet file.
Warm and reference runs alternate (best of --repeat each); every output is checked
equal to the reference's row for row. Both sides run in this process with their
libraries already imported: a user's ``entai score`` also pays the CLI's start.

Run: ``.venv/bin/python bench/score.py [--small]``. The last line is a JSON object;
``ratio`` = best warm entai seconds / best reference seconds (lower is better, target
<= 1.5); ``ratio_cold`` and ``ratio_pool`` the same for the other two ways.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _governed import Governed

from entai.shared.settings import EntaiSettings, load_settings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

FEATURES = tuple(f"f{i:02d}" for i in range(20))
CHUNK = 100_000


def generate(path: Path, rows: int, seed: int = 11) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=list(FEATURES))
    frame.insert(0, "user_id", np.arange(rows, dtype=np.int64))
    frame.insert(1, "event_timestamp", pd.Timestamp("2026-11-01", tz="UTC"))
    frame.to_parquet(path, index=False)


def register(settings: EntaiSettings, governed: Governed, trees: int, depth: int) -> str:
    """Train and register model ``bench_score`` (promoted to champion); its version's URI."""
    import xgboost

    from entai.pipelines.training import TrainOutcome, log_xgboost_run

    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.normal(size=(50_000, len(FEATURES))), columns=list(FEATURES))
    label = train["f00"] + train["f01"] * train["f02"] + rng.normal(size=len(train)) > 0
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": depth, "eta": 0.1},
        xgboost.DMatrix(train, label=label.astype(int)),
        num_boost_round=trees,
    )
    logged = log_xgboost_run(
        settings.mlflow,
        TrainOutcome(booster=booster, evals={}, feature_columns=FEATURES),
        params={"trees": trees, "depth": depth},
        metrics={},
        training_data=train.head(1000),
        dataset_name="bench",
        tags={},
        run_name="bench",
    )
    info = governed.local_champion(
        settings.mlflow, logged.model_uri, "bench_score", run_id=logged.run_id
    )
    return info.uri


def run_entai(
    settings: EntaiSettings, governed: Governed, source: Path, out: Path, *, service: bool
) -> tuple[float, int]:
    """One scoring into ``out``: on the platform's scoring service (started by the first
    call) or, with ``service=False``, on a fresh actor pool."""
    from entai.actors.core import LocalService
    from entai.pipelines.scoring import plan_scoring, run_scoring, scoring_service

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    registry = LocalService(governed.registry(settings.mlflow))
    plan = plan_scoring(settings, registry, "bench_score@champion", str(source), str(out))
    report = run_scoring(plan, actors=2, service=scoring_service(settings) if service else None)
    return time.perf_counter() - start, report.rows


def run_reference(uri: str, source: Path, out: Path) -> tuple[float, int]:
    import mlflow.xgboost
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    booster = mlflow.xgboost.load_model(uri)
    run_id = os.urandom(16).hex()
    frame = pd.read_parquet(source)
    keep = [c for c in frame.columns if c not in FEATURES]
    writer = None
    for begin in range(0, len(frame), CHUNK):
        chunk = frame.iloc[begin : begin + CHUNK]
        scores = booster.inplace_predict(chunk[list(FEATURES)]).astype(np.float64)
        rows = chunk[keep].assign(
            prediction=scores,
            model_name="bench_score",
            model_version=np.int64(1),
            scoring_run_id=run_id,
            input_dataset=str(source),
            created_timestamp=pd.Timestamp(datetime.now(UTC)).as_unit("us"),
        )
        table = pa.Table.from_pandas(rows, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out / "scores.parquet", table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return time.perf_counter() - start, len(frame)


def check_same(entai_out: Path, reference_out: Path) -> None:
    ours = pd.read_parquet(entai_out, columns=["user_id", "prediction"]).sort_values("user_id")
    theirs = pd.read_parquet(reference_out, columns=["user_id", "prediction"])
    if not (
        ours["user_id"].to_numpy().tolist() == theirs["user_id"].to_numpy().tolist()
        and np.array_equal(ours["prediction"].to_numpy(), theirs["prediction"].to_numpy())
    ):
        raise SystemExit("entai's and the reference's predictions differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true", help="100,000 rows, one repeat")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rows, repeat = (100_000, 1) if args.small else (args.rows, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="entai-bench-score-"))
    os.environ["ENTAI_HOME"] = str(work / "home")
    try:
        import ray

        settings = load_settings().resolved()
        source = work / "input.parquet"
        generate(source, rows)
        governed = Governed.over(settings)
        uri = register(settings, governed, args.trees, args.depth)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        reference = work / "reference" / "scores.parquet"
        first_ref, n = run_reference(uri, source, work / "reference")
        assert n == rows
        pool_s, n = run_entai(settings, governed, source, work / "pool", service=False)
        assert n == rows, (n, rows)
        check_same(work / "pool", reference)
        cold_s, n = run_entai(settings, governed, source, work / "cold", service=True)
        assert n == rows, (n, rows)
        check_same(work / "cold", reference)
        print(f"pool {pool_s:.2f} s, cold service {cold_s:.2f} s, reference {first_ref:.2f} s")
        entai_s, reference_s = [], [first_ref]
        for i in range(repeat):
            seconds, n = run_entai(settings, governed, source, work / "entai", service=True)
            assert n == rows, (n, rows)
            entai_s.append(seconds)
            check_same(work / "entai", reference)
            seconds, n = run_reference(uri, source, work / "reference")
            assert n == rows
            reference_s.append(seconds)
            print(f"run {i + 1}: entai warm {entai_s[-1]:.2f} s, reference {reference_s[-1]:.2f} s")
        ray.shutdown()
        figures = {
            "bench": "score",
            "rows": rows,
            "features": len(FEATURES),
            "trees": args.trees,
            "depth": args.depth,
            "entai_s": round(min(entai_s), 3),
            "entai_runs_s": [round(s, 3) for s in entai_s],
            "entai_cold_s": round(cold_s, 3),
            "entai_pool_s": round(pool_s, 3),
            "reference_s": round(min(reference_s), 3),
            "reference_runs_s": [round(s, 3) for s in reference_s],
            "entai_rows_per_s": round(rows / min(entai_s)),
            "reference_rows_per_s": round(rows / min(reference_s)),
            "ratio": round(min(entai_s) / min(reference_s), 3),
            "ratio_cold": round(cold_s / min(reference_s), 3),
            "ratio_pool": round(pool_s / min(reference_s), 3),
            "loadavg_before": load_before,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
            "python": sys.version.split()[0],
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
