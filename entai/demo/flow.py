"""``entai demo``: the walking skeleton of the whole platform on synthetic data.

generate events -> ingest (contract, masking, Ray Data -> raw lake) -> materialize
feature views (Ray Data -> offline Parquet + online shards) -> point-in-time training
set -> XGBoost on Ray Train -> MLflow run + registry (champion) -> Ray Serve app ->
predictions over HTTP with a bearer token -> the monitoring act
(:mod:`entai.demo.drift_act`: injected drift -> WARN -> ALERT -> retrain ->
challenger) -> summary. The demo works in its own ``<home>/demo`` directory,
recreated on each run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from entai.demo.champion import MODEL_NAME, register_champion, train_champion, training_set
from entai.demo.drift_act import ActContext, demo_monitoring, run_drift_act
from entai.shared.core import ServiceUnavailableError
from entai.shared.data import UndeclaredPii
from entai.shared.settings import EntaiSettings

__all__ = ["run_demo", "stop_demo"]

log = logging.getLogger(__name__)

_SERVE_APP = "entai"


class _Stages:
    """Prints one line per stage with its duration; keeps the timings for the summary."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with self.console.status(f"{name}..."):
            yield
        took = time.perf_counter() - start
        self.timings[name] = round(took, 2)
        self.console.print(f"[green]✓[/green] {name} [dim]({took:.1f}s)[/dim]")


def _demo_settings(settings: EntaiSettings) -> EntaiSettings:
    home = settings.home / "demo"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    return EntaiSettings(
        home=home,
        log_level=settings.log_level,
        ray=settings.ray,
        online_store=settings.online_store,
        registry=settings.registry,
        serve=settings.serve,
        security=settings.security.model_copy(update={"token_file": home / "admin_token"}),
        monitoring=demo_monitoring(settings.monitoring),
    ).resolved()


def run_demo(
    settings: EntaiSettings,
    *,
    users: int = 2_000,
    keep_running: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the walking skeleton; return (and print) its summary."""
    import ray

    from entai.actors.core import connect_ray

    console = console or Console()
    settings = _demo_settings(settings)
    for noisy in ("ray.data", "ray.serve", "ray.train", "ray.tune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stages = _Stages(console)
    with stages.stage("start Ray (local head, dashboard on 127.0.0.1)"):
        started = connect_ray(settings)
    try:
        summary = _run(settings, users, stages)
        _print_summary(console, summary)
        return summary
    finally:
        if not keep_running:
            stop_demo(settings)
            if started:
                ray.shutdown()
        else:
            console.print("left running (--keep-running); stop with `ray stop` on this head.")


def _run(settings: EntaiSettings, users: int, stages: _Stages) -> dict[str, Any]:
    from entai.demo.contracts import EVENTS_CONTRACT
    from entai.demo.generator import EcommerceWorld, WorldConfig
    from entai.pipelines.ingest import ingest_file
    from entai.shared.settings import resolve_hmac_key

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = 60
    world = EcommerceWorld(
        WorldConfig(n_users=users, n_products=400, days=days, start=today - timedelta(days=days))
    )
    with stages.stage("generate synthetic e-commerce events"):
        events = world.events()
        incoming = settings.home / "incoming"
        incoming.mkdir()
        events_file = incoming / "events.parquet"
        events.to_parquet(events_file, index=False)
    with stages.stage("ingest: contract validation, PII masking, Ray Data -> raw lake"):
        ingest = ingest_file(
            EVENTS_CONTRACT,
            str(events_file),
            lake_root=settings.lake.root,
            hmac_key=resolve_hmac_key(settings),
            progress=False,
            undeclared_pii=UndeclaredPii(settings.security.undeclared_pii),
        )
    with stages.stage("start platform services (shards, governance, registry, monitor)"):
        services = _start_services(settings)
    with stages.stage("materialize feature views (Ray Data -> offline + online)"):
        reports = _materialize(settings, services)
    with stages.stage("build the point-in-time training set"):
        rows, training = training_set(settings, world, events, today)
    with stages.stage("train XGBoost on Ray Train"):
        trained = train_champion(settings, training)
    with stages.stage("log to MLflow (with its monitoring reference), register as champion"):
        registered = register_champion(settings, trained, rows)
    with stages.stage("deploy the Serve application"):
        url = _deploy(settings)
    with stages.stage("predict over HTTP"):
        predictions = _predict(settings, url, rows)
    context = ActContext(
        settings=settings,
        url=url,
        token=settings.security.token_file.read_text().strip(),
        model=MODEL_NAME,
        champion=registered["version"],
        world=world,
        events=events,
        label_rows=rows,
        label_file=registered["label_file"],
        online=services,
    )
    act = run_drift_act(context, stages)
    return {
        "events": len(events),
        "ingest": {
            "rows_in": ingest.rows_in,
            "accepted": ingest.rows_accepted,
            "quarantined": ingest.rows_quarantined,
        },
        "materialized": {
            r.view: {"offline_rows": r.offline_rows, "online_keys": r.online_keys} for r in reports
        },
        "training_rows": len(training),
        "model": {
            "name": MODEL_NAME,
            "version": registered["version"],
            "run_id": registered["run_id"],
        },
        "auc": {
            "held_out": trained["test_auc"],
            "oracle": trained["oracle_auc"],
            "valid": trained["valid_auc"],
        },
        "predictions": predictions,
        "monitoring": act,
        "urls": {
            "api": url,
            "docs": f"{url}/docs",
            "dashboard": f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}",
            "mlflow": settings.mlflow.tracking_uri,
        },
        "token_file": str(settings.security.token_file),
        "lake": settings.lake.root,
        "timings_s": stages.timings,
    }


def _start_services(settings: EntaiSettings) -> Any:
    import ray

    from entai.actors.features import OnlineFeatureClient, shard_name
    from entai.client import start_services

    handles = start_services(settings)
    ray.get([h.__ray_ready__.remote() for h in handles.values()])
    return OnlineFeatureClient(
        [handles[shard_name(i)] for i in range(settings.online_store.num_shards)]
    )


def _materialize(settings: EntaiSettings, online: Any) -> list[Any]:
    from entai.demo.features import user_category_stats, user_stats
    from entai.pipelines.features import materialize
    from entai.shared.data import Lake

    return materialize(
        [user_category_stats, user_stats], lake=Lake(settings.lake.root), online=online
    )


def _deploy(settings: EntaiSettings) -> str:
    from ray import serve

    from entai.demo import features
    from entai.deployments.app import AppArgs, build_app
    from entai.deployments.grpc_ingress import serve_options

    serve.start(**serve_options(settings.serve))
    args = AppArgs(
        model_name=MODEL_NAME,
        feature_service=features.purchase_propensity.name,
        definitions_module=features.__name__,
        settings=settings,
        event_contracts={"events": "entai.demo.contracts:EVENTS_CONTRACT"},
    )
    serve.run(build_app(args), name=_SERVE_APP, route_prefix="/")
    return f"http://{settings.serve.host}:{settings.serve.port}"


def _predict(settings: EntaiSettings, url: str, rows: pd.DataFrame) -> list[dict[str, Any]]:
    import httpx

    token = settings.security.token_file.read_text().strip()
    sample = rows.drop_duplicates(["user_id"]).sample(5, random_state=1)
    body = {
        "entities": {"user_id": sample["user_id"].tolist(), "category": sample["category"].tolist()}
    }
    response = httpx.post(
        f"{url}/v1/predict/{MODEL_NAME}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    if response.status_code != 200:
        raise ServiceUnavailableError(
            f"prediction request failed with HTTP {response.status_code}: {response.text[:500]}",
            details={"status": response.status_code},
        )
    payload = response.json()
    return [
        {"user_id": u, "category": c, "p_buy_7d": round(p, 4), "version": payload["version"]}
        for u, c, p in zip(
            body["entities"]["user_id"],
            body["entities"]["category"],
            payload["predictions"],
            strict=True,
        )
    ]


def stop_demo(settings: EntaiSettings) -> None:
    """Delete the demo's Serve app and kill its service actors (what it started)."""
    import ray
    from ray import serve

    from entai.client import service_names

    if not ray.is_initialized():
        return
    try:
        try:
            serve.delete(_SERVE_APP)  # blocks until its replicas are gone
        finally:
            serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        for name in service_names(settings):
            try:
                ray.kill(ray.get_actor(name, namespace=settings.ray.namespace))
            except ValueError:
                continue


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(
        "user_id", "category", "P(buy in 7 days)", "model version", title="Predictions over HTTP"
    )
    for p in summary["predictions"]:
        table.add_row(str(p["user_id"]), p["category"], f"{p['p_buy_7d']:.3f}", str(p["version"]))
    console.print(table)
    auc = summary["auc"]
    console.print(
        f"held-out AUC [bold]{auc['held_out']:.3f}[/bold] "
        f"(oracle {auc['oracle']:.3f}, chance 0.500); "
        f"{summary['events']:,} events, {summary['ingest']['quarantined']} quarantined, "
        f"{summary['training_rows']:,} training rows"
    )
    _print_monitoring(console, summary["monitoring"], summary["model"]["version"])
    urls = summary["urls"]
    console.print(f"API {urls['api']}  (OpenAPI {urls['docs']})   dashboard {urls['dashboard']}")
    console.print(f"MLflow {urls['mlflow']}   admin token in {summary['token_file']}")


def _print_monitoring(console: Console, act: dict[str, Any], champion: int) -> None:
    stable, drift, challenger = act["stable"], act["drift"], act["challenger"]
    levels = " -> ".join(f"{a['level'].upper()} ({a['window_id']})" for a in drift["alerts"])
    console.print(
        f"monitoring: {stable['windows']} stable windows, {stable['drifted']} with dataset "
        f"drift; after the {act['shift']['category']} shift, {drift['drifted']} of "
        f"{drift['windows']} windows drifted: [bold]{levels or 'no alert'}[/bold]"
    )
    console.print(
        f"retrained: challenger [bold]v{challenger['version']}[/bold] "
        f"(valid AUC {challenger['valid_auc']:.3f}, reason: {challenger['reason']}); "
        f"champion v{challenger['champion_after']} (was v{champion}) until someone runs "
        f"`entai models promote {act['model']} {challenger['version']}`"
    )
