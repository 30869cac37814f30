"""Benchmark: 1,000,000 rows scored by ``entai score``'s pipeline vs a pandas + XGBoost loop.

Both score the same Parquet file (user id, event time, 20 numeric features) with the
same registered XGBoost model (binary:logistic, --trees trees of depth --depth) and
write the same output: the non-feature columns, ``prediction`` and the lineage
columns (model name and version, run id, input, created timestamp) as Parquet.

entai: ``plan_scoring`` + ``run_scoring``, i.e. ``entai score``'s pipeline (resolve the
alias in the registry, load the model from MLflow, plan parts of 100,000 rows, score
them with 2 workers, one file per part), timed from the call to the manifest marked
complete. A local Ray head (num_cpus=2) lives in this process, as a platform's would;
every entai run is a driver process of its own that joins it and exits, as separate
``entai score`` commands do (its imports and joining Ray are not timed, and reported
apart as ``driver_start_s``). Four ways, in this order:
- ``pool``: a fresh Ray Data pool of 2 scoring actors (``entai score`` with no
  platform up); the pool starts inside the timed run;
- ``cold``: the platform's scoring service started by this run (the service and its
  workers start and import inside the timed run);
- ``first``: the first run after a service that a driver which has since exited
  started and waited for (as ``entai up`` does): workers up, no model loaded yet;
- ``warm``: every later run (each in a new driver): the workers have the model
  version's booster.
Reference: one process loads the model from MLflow, reads the file with pandas and,
chunk by chunk (100,000 rows), predicts with XGBoost (its default threads: every core)
and appends the rows to one Parquet file.
Warm and reference runs alternate (best of --repeat each); every output is checked
equal to the reference's row for row. The reference runs with its libraries already
imported in this process.

Run: ``.venv/bin/python bench/score.py [--small]``. The last line is a JSON object;
``ratio`` = best warm entai seconds / best reference seconds (lower is better, target
<= 1.5); ``ratio_first``, ``ratio_cold`` and ``ratio_pool`` the same for the others.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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


def drive(mode: str, address: str, source: Path, out: Path) -> None:
    """One entai run as its own driver process (``--driver``); prints a JSON line."""
    begun = time.perf_counter()
    import ray

    from entai.actors.core import LocalService, connect_ray
    from entai.pipelines.scoring import plan_scoring, run_scoring, scoring_service

    settings = load_settings().resolved()
    connect_ray(settings, address=address)
    registry = LocalService(Governed.over(settings).registry(settings.mlflow))
    figures: dict[str, float | int] = {}
    if mode == "up":  # as `entai up`: start the service, wait for its workers, exit
        figures["workers"] = ray.get(scoring_service(settings, workers=2).ready.remote())
        print(json.dumps(figures))
        return
    shutil.rmtree(out, ignore_errors=True)
    figures["driver_start_s"] = round(time.perf_counter() - begun, 3)
    start = time.perf_counter()
    plan = plan_scoring(settings, registry, "bench_score@champion", str(source), str(out))
    service = None if mode == "pool" else scoring_service(settings, workers=2)
    report = run_scoring(plan, actors=2, service=service)
    figures.update(seconds=time.perf_counter() - start, rows=report.rows)
    print(json.dumps(figures))


def run_entai(mode: str, address: str, source: Path, out: Path) -> tuple[float, int, float]:
    """One entai run in a new driver process: seconds, rows, its start (imports, join)."""
    done = subprocess.run(
        [
            *(sys.executable, __file__, "--driver", mode, "--address", address),
            *("--source", str(source), "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"entai's {mode} run failed: {done.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures.get("seconds", 0.0), figures.get("rows", 0), figures.get("driver_start_s", 0.0)


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
    parser.add_argument("--driver", help=argparse.SUPPRESS)  # one entai run: its mode
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        drive(args.driver, args.address, args.source, args.out)
        return
    rows, repeat = (100_000, 1) if args.small else (args.rows, args.repeat)
    work = Path(tempfile.mkdtemp(prefix="entai-bench-score-"))
    os.environ["ENTAI_HOME"] = str(work / "home")
    try:
        import ray

        from entai.pipelines.scoring import SCORING_SERVICE

        settings = load_settings().resolved()
        source = work / "input.parquet"
        generate(source, rows)
        governed = Governed.over(settings)
        uri = register(settings, governed, args.trees, args.depth)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        ray.init(
            address="local",
            num_cpus=2,
            namespace=settings.ray.namespace,
            include_dashboard=False,
            log_to_driver=False,
        )
        address = ray.get_runtime_context().gcs_address
        reference = work / "reference" / "scores.parquet"
        first_ref, n = run_reference(uri, source, work / "reference")
        assert n == rows
        starts = []

        def entai(mode: str, out: str) -> float:
            seconds, n, started = run_entai(mode, address, source, work / out)
            assert n == rows, (mode, n, rows)
            check_same(work / out, reference)
            starts.append(started)
            return seconds

        pool_s = entai("pool", "pool")
        cold_s = entai("cold", "cold")
        ray.kill(ray.get_actor(SCORING_SERVICE, namespace=settings.ray.namespace))
        run_entai("up", address, source, work / "up")  # a new service, as `entai up` starts it
        first_s = entai("first", "first")
        print(
            f"pool {pool_s:.2f} s, cold service {cold_s:.2f} s, first after up {first_s:.2f} s, "
            f"reference {first_ref:.2f} s"
        )
        entai_s, reference_s = [], [first_ref]
        for i in range(repeat):
            entai_s.append(entai("warm", "entai"))
            seconds, n = run_reference(uri, source, work / "reference")
            assert n == rows
            reference_s.append(seconds)
            print(f"run {i + 1}: entai warm {entai_s[-1]:.2f} s, reference {reference_s[-1]:.2f} s")
        ray.shutdown()
        best_ref = min(reference_s)
        figures = {
            "bench": "score",
            "rows": rows,
            "features": len(FEATURES),
            "trees": args.trees,
            "depth": args.depth,
            "entai_s": round(min(entai_s), 3),
            "entai_runs_s": [round(s, 3) for s in entai_s],
            "entai_first_s": round(first_s, 3),
            "entai_cold_s": round(cold_s, 3),
            "entai_pool_s": round(pool_s, 3),
            "driver_start_s": [round(s, 3) for s in starts],
            "reference_s": round(best_ref, 3),
            "reference_runs_s": [round(s, 3) for s in reference_s],
            "entai_rows_per_s": round(rows / min(entai_s)),
            "reference_rows_per_s": round(rows / best_ref),
            "ratio": round(min(entai_s) / best_ref, 3),
            "ratio_first": round(first_s / best_ref, 3),
            "ratio_cold": round(cold_s / best_ref, 3),
            "ratio_pool": round(pool_s / best_ref, 3),
            "loadavg_before": load_before,
            "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
            "python": sys.version.split()[0],
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
