"""Benchmark: XGBoost training on Ray (entai) vs plain ``xgboost.train``, and registry latency.

Both sides train the same data with the same parameters and threads in one run:
1,000,000 rows x 20 features, 100 rounds (``--small``: 100,000 rows, 20 rounds).
entai runs with its default runner (``"auto"``: one Ray task for one worker), first
on a fresh cluster (cold) then again (warm); then forced onto Ray Train
(``runner="ray_train"``, ``XGBoostTrainer`` V2) and with the Ray Data hand-over
(``transport="ray_data"``). The task runner imports xgboost in its worker while the
driver hands the data over; each task run says whether it trained in that worker.
Each entai run is split into data hand-over, the worker's
own DMatrix build and training, and the fixed overhead (scheduling, process start,
Ray Train's controller and worker group, checkpoint, result transfer), so the summary
shows where the time goes. Ray cluster start is reported apart.

Then Ray Train's fixed phases, measured on a 1,000-row, 1-round ``XGBoostTrainer``
run: a callback (Ray Train's internal callback API) stamps the controller's and the
worker group's lifecycle hooks, the worker stamps its report, and Ray Train's own
debug lines give the placement group and worker-actor times.

Then MLflow: log the model, register (entai's ModelRegistry, which authenticates the
caller's token, vs a bare MlflowClient), set an alias (``challenger``), promote to
``champion`` through the gates, load by alias.

Then ``--pairs`` - 1 more pairs (default 3 in all), each on a fresh Ray cluster: the
reference, then entai's cold run. On this shared 2-core host the boosting alone
swings by up to 12 % between two runs of the same code (``docs/benchmarks.md``,
Training, session 21), more than the start-up being measured, so one pair decides
little.

    .venv/bin/python bench/train.py [--small] [--nthread 1] [--dashboard] [--pairs 3]

The last line is JSON; ``ratio`` = the median over the pairs of entai's wall time
(default runner, cold) / plain xgboost's wall time. Its ``pairs`` hold every pair; its
other figures (``reference_s``, ``entai_s``, the breakdowns) are the first pair's run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_data(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features)
    logit = x @ w * 0.5 + 0.8 * x[:, 0] * x[:, 1] - 1.0
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    names = [f"f{i}" for i in range(features)]
    frame = pd.DataFrame(x, columns=names)
    frame["label"] = y
    cut = int(rows * 0.8)  # rows are in time order: the last 20% validate
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True), names


@dataclass(frozen=True)
class Workload:
    """What both sides train: the same data, parameters, rounds and threads."""

    train: pd.DataFrame
    valid: pd.DataFrame
    names: list[str]
    params: dict[str, Any]
    rounds: int
    nthread: int


def plain_xgboost(work: Workload) -> dict[str, float]:
    import xgboost

    train, valid, names = work.train, work.valid, work.names
    start = time.perf_counter()
    dtrain = xgboost.DMatrix(
        train[names].to_numpy(np.float32), label=train["label"], feature_names=names
    )
    dvalid = xgboost.DMatrix(
        valid[names].to_numpy(np.float32), label=valid["label"], feature_names=names
    )
    built = time.perf_counter()
    evals: dict[str, Any] = {}
    xgboost.train(
        work.params,
        dtrain,
        num_boost_round=work.rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=evals,
        verbose_eval=False,
    )
    done = time.perf_counter()
    return {
        "total_s": done - start,
        "dmatrix_s": built - start,
        "train_s": done - built,
        "valid_auc": evals["valid"]["auc"][-1],
    }


def entai_train(
    work: Workload, storage: Path, transport: str = "object_store", runner: str = "auto"
) -> dict[str, Any]:
    from entai.pipelines.training import train_xgboost

    start = time.perf_counter()
    outcome = train_xgboost(
        work.train,
        work.valid,
        feature_columns=work.names,
        label_column="label",
        params=work.params,
        num_boost_round=work.rounds,
        storage_path=storage,
        cpus_per_worker=work.nthread,
        transport=transport,  # type: ignore[arg-type]
        runner=runner,  # type: ignore[arg-type]
    )
    total = time.perf_counter() - start
    worker = outcome.timings["worker_data_s"] + outcome.timings["worker_train_s"]
    return {
        "total_s": total,
        **outcome.timings,
        "start_up_s": total - worker,
        "runner": outcome.runner,
        "where_loaded": outcome.trained_where_loaded,
        "valid_auc": outcome.evals["valid"]["auc"][-1],
        "predictions": outcome.booster.inplace_predict(work.valid[work.names].head(1000)),
    }


_PHASES = (
    # (name, from event, to event)
    ("controller actor start", "fit_called", "controller_started"),
    ("scheduling decision", "controller_started", "worker_group_starting"),
    ("worker group start", "worker_group_starting", "worker_group_started"),
    ("train fn launch", "worker_group_started", "train_fn_started"),
    ("train fn (1k rows, 1 round)", "train_fn_started", "reporting"),
    ("report + checkpoint persist", "reporting", "reported"),
    ("finish noticed (poll)", "train_fn_done", "worker_group_stopping"),
    ("worker group shutdown", "worker_group_stopping", "worker_group_stopped"),
    ("controller shutdown hooks", "worker_group_stopped", "controller_finished"),
    ("result to the driver", "controller_finished", "fit_returned"),
)


def _stamp(path: str, event: str, **extra: Any) -> None:
    with Path(path).open("a") as out:
        out.write(json.dumps({"event": event, "t": time.time(), **extra}) + "\n")


def _probe_loop(config: dict[str, Any]) -> None:
    import tempfile

    import ray.train
    import xgboost

    stamps = config["stamps"]
    _stamp(stamps, "train_fn_started")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    booster = xgboost.train(
        {"nthread": 1}, xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(np.float32)), 1
    )
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(f"{tmp}/model.ubj")
        _stamp(stamps, "reporting")
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        _stamp(stamps, "reported")
    _stamp(stamps, "train_fn_done")


def ray_train_phases(tmp: Path) -> dict[str, Any]:
    """Stamp Ray Train V2's lifecycle on a tiny run; seconds per phase."""
    import logging

    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2._internal.execution.callback import (
        ControllerCallback,
        WorkerGroupCallback,
    )
    from ray.train.xgboost import XGBoostTrainer

    stamps = str(tmp / "stamps.jsonl")

    class Stamps(ControllerCallback, WorkerGroupCallback):  # runs in the controller actor
        def after_controller_start(self, train_run_context: Any) -> None:
            _stamp(stamps, "controller_started")

        def before_worker_group_start(self, worker_group_context: Any) -> None:
            _stamp(stamps, "worker_group_starting")

            # Ray Train's own debug lines time the placement group and the actors.
            class ToStamps(logging.Handler):
                def emit(self, record: logging.LogRecord) -> None:
                    _stamp(stamps, "log", message=record.getMessage())

            wg_log = logging.getLogger("ray.train.v2._internal.execution.worker_group")
            wg_log.setLevel(logging.DEBUG)
            wg_log.addHandler(ToStamps(logging.DEBUG))

        def after_worker_group_start(self, worker_group: Any) -> None:
            _stamp(stamps, "worker_group_started")

        def before_worker_group_shutdown(self, worker_group: Any) -> None:
            _stamp(stamps, "worker_group_stopping")

        def after_worker_group_shutdown(self, worker_group_context: Any) -> None:
            _stamp(stamps, "worker_group_stopped")

        def after_controller_finish(self, result: Any) -> None:
            _stamp(stamps, "controller_finished")

    trainer = XGBoostTrainer(
        _probe_loop,
        train_loop_config={"stamps": stamps},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="phases", storage_path=str(tmp / "phases"), callbacks=[Stamps()]),
    )
    _stamp(stamps, "fit_called")
    trainer.fit()
    _stamp(stamps, "fit_returned")
    events: dict[str, float] = {}
    ray_lines: list[str] = []
    for line in Path(stamps).read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "log":
            message = entry["message"]
            if message.startswith("[Worker Group Initialization]"):
                ray_lines.append(message.removeprefix("[Worker Group Initialization] "))
        else:
            events.setdefault(entry["event"], entry["t"])
    phases = {name: events[end] - events[begin] for name, begin, end in _PHASES}
    phases["total (fit)"] = events["fit_returned"] - events["fit_called"]
    return {"phases": phases, "ray_train_debug": ray_lines}


def _import_times(modules: list[str]) -> dict[str, float]:
    import importlib

    out = {}
    for name in modules:
        t = time.perf_counter()
        importlib.import_module(name)
        out[name] = time.perf_counter() - t
    return out


def cold_worker_imports() -> dict[str, float]:
    """What a fresh Ray worker spends importing before the task runner can train."""
    import ray

    # A runtime env of its own makes Ray start a new worker process for it.
    probe = ray.remote(num_cpus=1, runtime_env={"env_vars": {"ENTAI_BENCH_PROBE": "1"}})(
        _import_times
    )
    t = time.perf_counter()
    out: dict[str, float] = ray.get(probe.remote(["entai.pipelines.xgboost_fit", "xgboost"]))
    out["task round trip (new process)"] = time.perf_counter() - t
    return out


def registry_latency(
    tmp: Path, train: pd.DataFrame, names: list[str], params: dict[str, Any]
) -> dict[str, float]:
    import mlflow.xgboost
    import xgboost
    from _governed import Governed
    from mlflow.tracking import MlflowClient

    from entai.pipelines.training import TrainOutcome, log_xgboost_run
    from entai.shared.settings import EntaiSettings, MlflowSettings

    small = train.head(5_000)
    booster = xgboost.train(params, xgboost.DMatrix(small[names], label=small["label"]), 20)
    settings = MlflowSettings(
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        artifact_root=str(tmp / "artifacts"),
        experiment="bench",
    )
    # Governance over a home of its own: its tokens register and promote (not timed).
    governed = Governed.over(EntaiSettings(home=tmp / "home", mlflow=settings).resolved())
    out: dict[str, float] = {}
    t = time.perf_counter()
    registry = governed.registry(settings)
    out["open_store_s"] = time.perf_counter() - t
    evals = {"valid": {"auc": [0.5] * 100, "logloss": [0.6] * 100}}
    t = time.perf_counter()
    logged = log_xgboost_run(
        settings,
        TrainOutcome(booster, evals, tuple(names)),
        params=params,
        metrics={"valid_auc": 0.8},
        training_data=small,
        dataset_name="bench",
        tags={},
        run_name="bench",
        label_column="label",
    )
    out["log_run_and_model_s"] = time.perf_counter() - t
    t = time.perf_counter()
    info = registry.register(
        logged.model_uri,
        "bench",
        token=governed.trainer,
        run_id=logged.run_id,
        metrics={"valid_auc": 0.8},
        validation_dataset_id="v",
    )
    out["register_s"] = time.perf_counter() - t
    t = time.perf_counter()  # an ungated alias: the move itself, as the raw client's below
    registry.set_alias("bench", "challenger", info.version, token=governed.trainer, reason="b")
    out["set_alias_s"] = time.perf_counter() - t
    t = time.perf_counter()  # champion: through the gates, with another principal's token
    registry.promote("bench", info.version, token=governed.approver, reason="bench")
    out["promote_s"] = time.perf_counter() - t
    t = time.perf_counter()
    mlflow.xgboost.load_model("models:/bench@champion")
    out["load_by_alias_s"] = time.perf_counter() - t
    client = MlflowClient(registry_uri=mlflow.get_registry_uri())
    client.create_registered_model("bench-raw")
    t = time.perf_counter()
    mv = client.create_model_version("bench-raw", logged.model_uri, run_id=logged.run_id)
    out["raw_register_s"] = time.perf_counter() - t
    t = time.perf_counter()
    client.set_registered_model_alias("bench-raw", "champion", mv.version)
    out["raw_set_alias_s"] = time.perf_counter() - t
    return out


@contextmanager
def fresh_ray(dashboard: bool) -> Iterator[tuple[float, Path]]:
    """A fresh local Ray cluster and a scratch directory; the seconds the cluster took."""
    import ray

    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=dashboard, log_to_driver=False)
    started = time.perf_counter() - t
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            yield started, Path(tmp_dir)
    finally:
        ray.shutdown()


def cold_pair(work: Workload, dashboard: bool) -> tuple[dict[str, float], dict[str, Any]]:
    """On a fresh cluster: the reference, then entai's cold run."""
    with fresh_ray(dashboard) as (_, tmp):
        return plain_xgboost(work), entai_train(work, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100k rows, 20 rounds")
    parser.add_argument("--nthread", type=int, default=1, help="XGBoost threads on both sides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="start Ray's dashboard as `entai up` does (Ray Train's state API calls use it)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="reference + cold entai pairs, each on a fresh cluster; the ratio is their median",
    )
    args = parser.parse_args()
    rows, rounds = (100_000, 20) if args.small else (1_000_000, 100)
    features = 20
    load_before = os.getloadavg()
    train, valid, names = make_data(rows, features, args.seed)
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 6,
        "eta": 0.1,
        "eval_metric": ["logloss", "auc"],
        "nthread": args.nthread,
        "seed": args.seed,
    }
    work = Workload(train, valid, names, params, rounds, args.nthread)

    with fresh_ray(args.dashboard) as (cluster_s, tmp):
        reference = plain_xgboost(work)
        runs = {
            "entai (cold)": entai_train(work, tmp / "a"),
            "entai (warm)": entai_train(work, tmp / "b"),
            "on Ray Train": entai_train(work, tmp / "c", runner="ray_train"),
            "via Ray Data": entai_train(work, tmp / "d", transport="ray_data"),
        }
        phases = ray_train_phases(tmp)
        imports = cold_worker_imports()
        registry = registry_latency(tmp, train, names, params)
    pairs = [(reference, runs["entai (cold)"])]
    pairs += [cold_pair(work, args.dashboard) for _ in range(args.pairs - 1)]
    load_after = os.getloadavg()

    entai, ray_train = runs["entai (cold)"], runs["on Ray Train"]
    same_model = float(np.max(np.abs(entai["predictions"] - ray_train["predictions"])))
    ref_s, ent_s = reference["total_s"], entai["total_s"]
    ratios = [cold["total_s"] / plain["total_s"] for plain, cold in pairs]
    ratio = statistics.median(ratios)
    start_ups = [cold["start_up_s"] for _, cold in pairs]
    within = ratio <= 1.2 and max(start_ups) <= 10.0
    print(f"data: {rows:,} rows x {features} features, {rounds} rounds, nthread={args.nthread}")
    print(
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (2 cores, shared)"
    )
    print(f"ray.init (not counted): {cluster_s:.1f}s, dashboard {args.dashboard}")
    print(
        f"plain xgboost.train : {ref_s:7.2f}s  (DMatrix {reference['dmatrix_s']:.2f}s, "
        f"train {reference['train_s']:.2f}s)  valid AUC {reference['valid_auc']:.4f}"
    )
    for label, run in runs.items():
        print(
            f"{label:20s}: {run['total_s']:7.2f}s  [{run['runner']}] "
            f"hand-over {run['handover_s']:.2f}s, "
            f"worker DMatrix {run['worker_data_s']:.2f}s, "
            f"worker train {run['worker_train_s']:.2f}s, "
            f"fixed {run['fixed_overhead_s']:.2f}s, model load {run['load_model_s']:.2f}s "
            f"(start-up in all {run['start_up_s']:.2f}s)  valid AUC {run['valid_auc']:.4f}"
            + (
                ""
                if run["where_loaded"] is None
                else f", in the loading worker {run['where_loaded']}"
            )
        )
    print(f"task vs Ray Train: max |prediction difference| {same_model:.2e}")
    print(
        "a fresh worker's imports: "
        + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in imports.items())
    )
    print("Ray Train fixed phases (1,000 rows, 1 round):")
    for name, seconds in phases["phases"].items():
        print(f"  {name:30s} {seconds:6.2f}s")
    for line in phases["ray_train_debug"]:
        print(f"  ray train: {line.splitlines()[0]}")
    print(f"{len(pairs)} pairs (reference, entai cold), each on a fresh cluster:")
    for (plain, cold), pair_ratio in zip(pairs, ratios, strict=True):
        print(
            f"  {plain['total_s']:7.2f}s vs {cold['total_s']:7.2f}s "
            f"(boosting {plain['train_s']:.2f}s vs {cold['worker_train_s']:.2f}s, "
            f"entai start-up {cold['start_up_s']:.2f}s): {pair_ratio:.3f}"
        )
    print(
        f"target median ratio <= 1.2 and start-up <= 10s: ratio {ratio:.3f}, "
        f"start-up at most {max(start_ups):.1f}s: {'within' if within else 'OVER'} target"
    )
    print("MLflow (SQLite): " + ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in registry.items()))
    print(
        json.dumps(
            {
                "rows": rows,
                "features": features,
                "rounds": rounds,
                "nthread": args.nthread,
                "runner": entai["runner"],
                "reference_s": round(ref_s, 3),
                "entai_s": round(ent_s, 3),
                "entai_warm_s": round(runs["entai (warm)"]["total_s"], 3),
                "ray_train_s": round(ray_train["total_s"], 3),
                "ray_data_s": round(runs["via Ray Data"]["total_s"], 3),
                "entai_fixed_overhead_s": round(entai["fixed_overhead_s"], 3),
                "entai_start_up_s": round(entai["start_up_s"], 3),
                "entai_trained_where_loaded": entai["where_loaded"],
                "ray_train_fixed_overhead_s": round(ray_train["fixed_overhead_s"], 3),
                "ray_train_phases_s": {k: round(v, 3) for k, v in phases["phases"].items()},
                "max_prediction_diff": same_model,
                "cold_worker_imports_s": {k: round(v, 3) for k, v in imports.items()},
                "pairs": [
                    {
                        "reference_s": round(plain["total_s"], 3),
                        "entai_s": round(cold["total_s"], 3),
                        "entai_start_up_s": round(cold["start_up_s"], 3),
                        "ratio": round(pair_ratio, 3),
                    }
                    for (plain, cold), pair_ratio in zip(pairs, ratios, strict=True)
                ],
                "within_target": within,
                "cluster_start_s": round(cluster_s, 3),
                "dashboard": args.dashboard,
                "load_avg": [round(load_before[0], 2), round(load_after[0], 2)],
                "registry_ms": {k: round(v * 1000, 1) for k, v in registry.items()},
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
