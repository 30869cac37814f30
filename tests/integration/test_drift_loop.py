"""Drift that acts, end to end: Serve app -> monitor -> WARN/ALERT -> retrain -> challenger.

One platform for the module, on the session cluster: every service started by
``start_services`` (the drift monitor and the retraining worker included), a champion
trained in-process on generated data and logged with the lineage helpers training
uses (reference profile, training config: as the demo's champion; this skips one Ray
Train start), the real Serve app on port 8131. The retrain goes through
``run_training`` and Ray Train. Features reach the
offline and online stores through the views' transforms and ``push``, as in the demo's
shift (ingest and materialize have their own tests). Windows are 200 rows, tested with
the demo's small-window drift settings.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.demo import features
from entai.demo.drift_act import SMALL_WINDOW_DRIFT, send_rows
from entai.demo.generator import CATEGORIES, EcommerceWorld, Shift, WorldConfig

PORT = 8131
MODEL = "drift_loop_model"
WINDOW = 200
SHIFT = Shift(category="electronics", popularity=4.0, price=0.5)
SHIFTED_SHARE = 0.7  # traffic after the shift leans towards the category
DATASET_KEY = ["*", "dataset"]


@dataclass
class Loop:
    """The deployed platform of this module."""

    settings: Any
    url: str
    token: str
    world: EcommerceWorld
    events: pd.DataFrame
    labels: Path
    online: Any
    registry: Any
    governance: Any
    champion: int


def _store_features(loop_settings: Any, online: Any, events: pd.DataFrame, after: Any) -> None:
    """Compute both views from ``events``; push rows newer than ``after`` off- and online."""
    from entai.pipelines.stream import push
    from entai.shared.lake import Lake

    lake = Lake(loop_settings.lake.root)
    for view in (features.user_category_stats, features.user_stats):
        frame = view.compute(events)
        if after is not None:
            frame = frame[frame["event_timestamp"] > after]
        push(view, frame, lake=lake, online=online)


def _register_champion(ray: Any, settings: Any, config: Any, registry: Any) -> int:
    """Train in-process (plain XGBoost), log with the lineage artifacts, register."""
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from entai.pipelines.run_training import build_training_data
    from entai.pipelines.tracking import log_xgboost_run
    from entai.pipelines.train import TrainOutcome
    from entai.pipelines.version_lineage import lineage_artifacts, lineage_tags

    data = build_training_data(settings, config)
    train = xgb.DMatrix(data.train[data.features], label=data.train["label"])
    booster = xgb.train(config.params, train, num_boost_round=config.num_boost_round)
    scores = booster.inplace_predict(data.valid[data.features])
    auc = float(roc_auc_score(data.valid["label"], scores))
    logged = log_xgboost_run(
        settings.mlflow,
        TrainOutcome(booster, {}, tuple(data.features)),
        params=config.params,
        metrics={"valid_auc": auc},
        training_data=data.train,
        dataset_name="drift-loop-champion",
        tags={},
        run_name="drift-loop-champion",
        artifacts=lineage_artifacts(
            config, data.valid, data.features, scores, valid_auc=auc, sample_size=5000
        ),
    )
    info = ray.get(
        registry.register.remote(
            logged.model_uri,
            MODEL,
            registrant="tests",
            lineage=lineage_tags(logged.run_id),
            run_id=logged.run_id,
        )
    )
    return int(info.version)


def _wait(what: str, ready: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def loop(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    from ray import serve

    from entai.actors.feature_shard import shard_name
    from entai.actors.governance import ACTOR_NAME as GOVERNANCE
    from entai.actors.model_registry import ACTOR_NAME as REGISTRY
    from entai.actors.online_client import OnlineFeatureClient
    from entai.client import service_names, start_services
    from entai.deployments.app import AppArgs, build_app
    from entai.pipelines.train_config import CardText, TrainConfig
    from entai.shared.settings import load_settings

    home = tmp_path_factory.mktemp("drift-loop")
    settings = load_settings(
        home=home,
        ray={"namespace": f"drift-loop-{uuid.uuid4().hex[:8]}"},
        serve={"port": PORT, "request_timeout_s": 30},
        online_store={"num_shards": 2},
        monitoring={
            "window_count": WINDOW,
            "window_seconds": None,
            "tick_interval_s": 1.0,
            "retrain_poll_s": 1.0,
            "drift": SMALL_WINDOW_DRIFT,
            "retrain": {"min_interval_s": 0},
        },
    ).resolved()
    handles = start_services(settings)
    ray_cluster.get([h.__ray_ready__.remote() for h in handles.values()], timeout=120)
    online = OnlineFeatureClient(
        [handles[shard_name(i)] for i in range(settings.online_store.num_shards)]
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    world = EcommerceWorld(
        WorldConfig(n_users=300, n_products=400, days=50, seed=7, start=today - timedelta(days=50))
    )
    events = world.events()
    _store_features(settings, online, events, after=None)
    # Cutoffs late enough that every 30-day feature window is full, as it is online.
    cutoffs = [world.config.start + timedelta(days=d) for d in range(30, 44, 2)]
    labels = home / "labels.parquet"
    world.label_rows(events, cutoffs, timedelta(days=7)).to_parquet(labels, index=False)
    config = TrainConfig(
        model_name=MODEL,
        feature_service=features.purchase_propensity.name,
        definitions_module=features.__name__,
        label_source=str(labels),
        num_boost_round=30,
        baselines=(),
        alias=None,
        card=CardText(intended_use="drift loop test", owners=("tests@entai.local",)),
    )
    registry = handles[REGISTRY]
    version = _register_champion(ray_cluster, settings, config, registry)
    ray_cluster.get(
        registry.set_alias.remote(MODEL, "champion", version, by="tests", reason="first model")
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    args = AppArgs(
        model_name=MODEL,
        feature_service=features.purchase_propensity.name,
        definitions_module=features.__name__,
        settings=settings,
        shadow=False,
        tap_flush_interval_s=0.2,
    )
    serve.run(build_app(args), name="drift-loop", route_prefix="/")
    try:
        yield Loop(
            settings=settings,
            url=f"http://127.0.0.1:{PORT}",
            token=settings.security.token_file.read_text().strip(),
            world=world,
            events=events,
            labels=labels,
            online=online,
            registry=registry,
            governance=handles[GOVERNANCE],
            champion=version,
        )
    finally:
        try:
            serve.delete("drift-loop")
            serve.shutdown()
        finally:
            for name in service_names(settings):
                ray_cluster.kill(ray_cluster.get_actor(name, namespace=settings.ray.namespace))


def _report(loop: Loop) -> dict[str, Any] | None:
    import httpx

    response = httpx.get(
        f"{loop.url}/v1/monitoring/{MODEL}",
        headers={"Authorization": f"Bearer {loop.token}"},
        timeout=30.0,
    )
    if response.status_code == 404:  # the monitor does not watch the model yet
        return None
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def _windows(loop: Loop, at_least: int) -> list[dict[str, Any]]:
    def closed() -> list[dict[str, Any]] | None:
        report = _report(loop)
        if report is None or len(report["windows"]) < at_least:
            return None
        windows: list[dict[str, Any]] = report["windows"]
        return windows

    found: list[dict[str, Any]] = _wait(f"{at_least} closed windows", closed, 90.0)
    return found


def _traffic(loop: Loop, n: int, seed: int, shifted_share: float) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, loop.world.config.n_users, n)
    categories = np.asarray(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)]
    categories[rng.random(n) < shifted_share] = SHIFT.category
    return users, categories


def _retrain_requests(loop: Loop) -> list[Path]:
    root = Path(loop.settings.lake.root) / "monitoring" / "retrain_requests"
    return sorted(root.rglob("*.json")) if root.exists() else []


def test_stable_traffic_raises_no_alert_and_no_retrain_request(loop: Loop) -> None:
    report = _wait("the monitor to watch the champion", lambda: _report(loop), 60.0)
    assert report["version"] == loop.champion
    assert report["window"]["count"] == WINDOW
    before = len(report["windows"])
    send_rows(loop.url, loop.token, MODEL, *_traffic(loop, 3 * WINDOW, 11, 0.0))
    windows = _windows(loop, before + 3)[before:]
    assert [w["n"] for w in windows] == [WINDOW] * 3
    assert all(w["version"] == loop.champion for w in windows)
    assert not any(a["level"] == "alert" for w in windows for a in w["alerts"])
    assert not any(w["status"] == "drift" for w in windows)
    assert _retrain_requests(loop) == []


def test_shifted_traffic_alerts_and_a_challenger_is_retrained_for_it(loop: Loop) -> None:
    import ray

    shifted = loop.world.shifted(SHIFT, days=14)
    new_events = shifted.events()
    last_day = loop.events["event_timestamp"].max().floor("D") + pd.Timedelta(days=1)
    _store_features(loop.settings, loop.online, pd.concat([loop.events, new_events]), last_day)
    cutoffs = [shifted.config.start + timedelta(days=d) for d in range(0, 8, 2)]
    fresh = shifted.label_rows(new_events, cutoffs, timedelta(days=7))
    pd.concat([pd.read_parquet(loop.labels), fresh]).to_parquet(loop.labels, index=False)

    before = len(_windows(loop, 0))
    levels: list[str] = []
    for i in range(4):
        send_rows(loop.url, loop.token, MODEL, *_traffic(loop, WINDOW, 100 + i, SHIFTED_SHARE))
        window = _windows(loop, before + i + 1)[-1]
        levels += [
            a["level"] for a in window["alerts"] if [a["feature"], a["method"]] == DATASET_KEY
        ]
        if "alert" in levels:
            break
    assert levels[:2] == ["warn", "alert"], levels

    def challenger() -> Any:
        return ray.get(loop.registry.subscribe.remote(MODEL))["aliases"].get("challenger")

    version = int(_wait("the retrained challenger", challenger, 150.0))
    info = ray.get(loop.registry.version.remote(MODEL, version))
    champion = ray.get(loop.registry.resolve.remote(MODEL, "champion"))
    assert version > loop.champion
    assert champion.version == loop.champion  # auto_promote is off: a person decides
    reason = info.tags["entai.retrain_reason"]
    assert reason == "dataset drift in 2 consecutive windows"
    assert info.tags["entai.retrained_from"] == str(loop.champion)
    assert info.tags["entai.monitoring_reference"].endswith("monitoring/reference_profile.json")
    closed = _wait(
        "the request to be closed",
        lambda: [p for p in _retrain_requests(loop) if p.parent.name == "done"],
        60.0,
    )
    assert len(closed) == len(_retrain_requests(loop)) == 1
    entries = ray.get(loop.governance.query_audit.remote(loop.token, action="retrain:registered"))
    assert [(e.details["version"], e.details["reason"]) for e in entries] == [(version, reason)]
    requested = ray.get(
        loop.governance.query_audit.remote(loop.token, action="monitoring:retrain_request")
    )
    assert [e.details["reason"] for e in requested] == [reason]
