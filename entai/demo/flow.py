"""``entai demo``: the walking skeleton of the whole platform on synthetic data.

join (or start) the platform -> generate events -> ingest (contract, masking, Ray
Data -> raw lake) -> materialize feature views (Ray Data -> offline Parquet + online
shards) -> point-in-time training set -> XGBoost on Ray Train -> MLflow run + registry
(champion) -> the product ranker (:mod:`entai.demo.ranker`: trained, compared with
popularity, promoted through the gates) -> Ray Serve app -> predictions and
recommendations over HTTP with a bearer token -> the
monitoring act (:mod:`entai.demo.drift_act`: injected drift -> WARN -> ALERT ->
retrain -> challenger) -> the live loop (:mod:`entai.demo.live`: views over
``POST /v1/events`` -> stream workers -> online features -> recommendations ->
feedback) -> summary.

Time: the generated history ends two weeks before today and the drift act's shifted
weeks fill the time up to today, so the live events, dated now, are the newest the
platform holds, and nothing the demo writes is dated in the future (a row dated ahead
would outrank, by last-write-wins, the rows a user sends afterwards).

The demo runs on the platform of its settings' home, like every command: the one
``entai up`` started (or the cluster of ``RAY_ADDRESS``), else one it starts itself
as ``entai up`` would (a head that outlives the demo with ``--keep-running``, stopped
after it otherwise). Called from Python with Ray already connected, it uses that
cluster. Its own files (the generated events, the champion's labels) live in
``<home>/demo``, recreated on each run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from entai.actors.services import Services
from entai.demo.api import post_json
from entai.demo.champion import MODEL_NAME, register_champion, train_champion, training_set
from entai.demo.contracts import ingest_events
from entai.demo.drift_act import SHIFT_DAYS, ActContext, demo_policy, run_drift_act
from entai.demo.live import burst_of_views, live_views, shoppers
from entai.demo.ranker import (
    CATEGORY_ACTIVITY_FEATURE,
    RANKER_NAME,
    RECENT_VIEWS_FEATURE,
    recommend_over_http,
    train_and_promote_ranker,
)
from entai.shared.core import redact_url
from entai.shared.settings import EntaiSettings, StreamSettings

__all__ = ["run_demo", "stop_demo"]

log = logging.getLogger(__name__)

_SERVE_APP = "entai"
_STAGES = 19  # platform, 14 of the flow, 4 of the drift act
DEMO_STREAM = StreamSettings(
    contract="entai.demo.contracts:EVENTS_CONTRACT", definitions_module="entai.demo.features"
)
"""The demo's event source: consumed by the platform's stream workers while it runs."""
_APP_TOKEN_TTL_S = 24 * 3600.0
_WORK_TOKEN_TTL_S = 3600.0  # the demo's own registering and approving tokens
_APP_PRINCIPAL = "app"  # the default policy's role that may predict and nothing else

Owner = Literal["caller", "joined", "started"]
"""Whose platform the demo runs on: Ray the caller connected, one that was running,
or one the demo started."""


class _Stages:
    """A progress bar over the demo's stages (on a terminal) and a line per finished stage.

    Keeps each stage's duration for the summary.
    """

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.timings: dict[str, float] = {}
        self._progress: Progress | None = None
        if console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task("entai demo", total=total)

    def __enter__(self) -> _Stages:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run a block as one named stage."""
        if self._progress is not None:
            self._progress.update(self._task, description=name)
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.timings[name] = round(took, 2)
        if self._progress is not None:
            self._progress.advance(self._task)
        self.console.print(Text.assemble(("✓ ", "green"), name, (f" ({took:.1f}s)", "dim")))


def _whose_platform(settings: EntaiSettings) -> tuple[Owner, str]:
    """Whose platform the demo will use, and the stage that gets it ready."""
    import ray

    from entai.client import platform_address

    if ray.is_initialized():
        return "caller", "start the platform services on the connected Ray cluster"
    address = platform_address(settings)
    if address is not None:
        return "joined", f"join the running platform at {address}"
    return "started", "no platform running: start one (Ray head, services, MLflow UI)"


def _platform(settings: EntaiSettings, owner: Owner, mlflow_port: int | None) -> dict[str, Any]:
    import ray

    from entai.client import ensure_platform, start_services

    platform: dict[str, Any] = {"mlflow_url": None, "dashboard_url": ""}
    if owner != "caller":
        platform = ensure_platform(settings, mlflow_port=mlflow_port)
    handles = start_services(settings)  # found by name where the platform runs them
    ray.get([h.__ray_ready__.remote() for h in handles.values()])
    return {**platform, "handles": handles}


def with_demo_stream(settings: EntaiSettings) -> EntaiSettings:
    """The settings with the demo's ``events`` stream, unless they configure one."""
    if "events" in settings.streams:
        return settings
    return settings.model_copy(update={"streams": {**settings.streams, "events": DEMO_STREAM}})


def run_demo(
    settings: EntaiSettings,
    *,
    users: int = 2_000,
    keep_running: bool = False,
    console: Console | None = None,
    mlflow_port: int | None = 5000,
) -> dict[str, Any]:
    """Run the walking skeleton on the settings' platform; return (and print) its summary.

    Args:
        settings: The platform's settings (its home is the demo's).
        users: Synthetic users.
        keep_running: Leave the platform and the demo's Serve app up afterwards;
            otherwise the demo stops what it started.
        console: Where to print (default: stdout).
        mlflow_port: The MLflow UI's port when the demo starts the platform.
    """
    console = console or Console(soft_wrap=True)
    settings = with_demo_stream(settings.resolved())
    owner, action = _whose_platform(settings)
    with _Stages(console, total=_STAGES + (0 if keep_running else 1)) as stages:
        try:
            with stages.stage(action):
                platform = _platform(settings, owner, mlflow_port)
            summary = _run(settings, users, stages, platform)
        except BaseException:
            _after_failure(settings, owner, keep_running, console)
            raise
        if not keep_running:
            with stages.stage("stop what the demo started"):
                left = _leave(settings, owner)
    token = _app_token(settings, platform["handles"]) if keep_running else None
    _print_summary(console, summary)
    if keep_running:
        _print_running(console, summary, owner, token)
    else:
        console.print(left)
    return summary


def _leave(settings: EntaiSettings, owner: Owner) -> str:
    """Stop what the demo started; say what is left."""
    import ray

    from entai.client import stop_platform

    if owner == "caller":
        stop_demo(settings)
        return "stopped the demo's Serve app and the platform services"
    if owner == "started":
        ray.shutdown()
        stop_platform(settings)
        return "stopped the platform the demo started (`entai demo --keep-running` leaves it up)"
    try:
        _delete_app()
    finally:
        ray.shutdown()
    return "removed the demo's Serve app; the platform it joined keeps running (`entai down`)"


def _after_failure(
    settings: EntaiSettings, owner: Owner, keep_running: bool, console: Console
) -> None:
    """Stop what the demo started unless told to keep it; never hide the failure."""
    if keep_running:
        if owner == "started":
            console.print("the platform the demo started is still up: `entai down` stops it")
        return
    try:
        _leave(settings, owner)
    except Exception:  # the demo's own failure is the news
        log.warning("could not stop what the demo started", exc_info=True)


def _delete_app() -> None:
    from ray import serve

    if _SERVE_APP in serve.status().applications:
        serve.delete(_SERVE_APP)  # blocks until its replicas are gone


def _mint(settings: EntaiSettings, handles: dict[str, Any], principal: str, ttl_s: float) -> str:
    """A token for ``principal`` of the default policy, minted with the admin token."""
    import ray

    from entai.actors.governance import ACTOR_NAME as GOVERNANCE

    admin = settings.security.token_file.read_text().strip()
    governance = handles[GOVERNANCE]
    secret, _ = ray.get(governance.create_token.remote(admin, principal, ttl_s))
    return str(secret)


def _app_token(settings: EntaiSettings, handles: dict[str, Any]) -> str:
    """A token for predictions only (principal ``app``), expiring in 24 hours."""
    return _mint(settings, handles, _APP_PRINCIPAL, _APP_TOKEN_TTL_S)


@dataclass(frozen=True)
class _DemoTokens:
    """Who registers the demo's models and who approves them: two principals, so
    the four-eyes gate holds (tokens of the default policy's ``ml-engineer`` and
    ``approver``, expiring within the hour)."""

    trainer: str
    approver: str

    @classmethod
    def mint(cls, settings: EntaiSettings, handles: dict[str, Any]) -> _DemoTokens:
        return cls(
            trainer=_mint(settings, handles, "ml-engineer", _WORK_TOKEN_TTL_S),
            approver=_mint(settings, handles, "approver", _WORK_TOKEN_TTL_S),
        )


def _workdir(settings: EntaiSettings) -> Path:
    """``<home>/demo``, emptied: the demo's generated input and the champion's labels."""
    workdir = settings.home / "demo"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    return workdir


def _run(
    settings: EntaiSettings, users: int, stages: _Stages, platform: dict[str, Any]
) -> dict[str, Any]:
    from entai.actors.features import OnlineFeatureClient, shard_name
    from entai.demo.generator import EcommerceWorld, WorldConfig

    # The history ends SHIFT_DAYS ago; the drift act fills the rest (the docstring's "Time").
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = 60
    start = today - timedelta(days=days + SHIFT_DAYS)
    world = EcommerceWorld(WorldConfig(n_users=users, n_products=400, days=days, start=start))
    with stages.stage("generate synthetic e-commerce events"):
        events = world.events()
        workdir = _workdir(settings)
        events_file = workdir / "events.parquet"
        events.to_parquet(events_file, index=False)
    with stages.stage("ingest: contract validation, PII masking, Ray Data -> raw lake"):
        ingest = ingest_events(settings, events_file)
    handles = platform["handles"]
    tokens = _DemoTokens.mint(settings, handles)
    services = OnlineFeatureClient(
        [handles[shard_name(i)] for i in range(settings.online_store.num_shards)],
        credential=tokens.trainer,  # an ml-engineer's token: features:write
    )
    with stages.stage("materialize feature views (Ray Data -> offline + online)"):
        reports = _materialize(settings, services)
    with stages.stage("build the point-in-time training set"):
        rows, training = training_set(settings, world, events)
    with stages.stage("train XGBoost on Ray Train"):
        trained = train_champion(settings, training)
    with stages.stage("log to MLflow (with its monitoring reference), register as champion"):
        registered = register_champion(
            settings,
            trained,
            rows,
            label_file=workdir / "labels.parquet",
            trainer_token=tokens.trainer,
            approver_token=tokens.approver,
            monitoring_policy=demo_policy(),
        )
    with stages.stage("train the product ranker on Ray, NDCG vs popularity, promote via gates"):
        ranker = train_and_promote_ranker(
            settings,
            events,
            world.products(),
            start=world.config.start,
            end=world.config.start + timedelta(days=days),
            trainer_token=tokens.trainer,
            approver_token=tokens.approver,
        )
    with stages.stage("deploy the Serve application"):
        url = _deploy(settings)
    token = settings.security.token_file.read_text().strip()
    with stages.stage("predict and recommend over HTTP"):
        predictions = _predict(settings, url, rows)
        ranker["recommendations"] = recommend_over_http(url, token, int(rows["user_id"].iloc[0]))
    context = ActContext(
        settings=settings,
        url=url,
        token=token,
        model=MODEL_NAME,
        champion=registered["version"],
        world=world,
        events=events,
        label_rows=rows,
        label_file=registered["label_file"],
        workdir=workdir,
        online=services,
    )
    act = run_drift_act(context, stages)
    # The live scenes come after the shifted weeks, in the world as it is now.
    with stages.stage("live: views over POST /v1/events -> lake -> online features"):
        live = live_views(url, token, act.events)
    with stages.stage("live: a burst of views in a new category -> new recommendations"):
        live["burst"] = burst_of_views(url, token, act.world, act.events, live["user_id"])
    with stages.stage("live: shoppers click and buy -> feedback -> the ranker's live CTR"):
        live["shoppers"] = shoppers(url, token, act.world)
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
        "ranker": ranker,
        "live": live,
        "monitoring": act.summary,
        "urls": {
            "api": url,
            "docs": f"{url}/docs",
            "dashboard": platform["dashboard_url"]
            or f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}",
            "mlflow": platform["mlflow_url"]
            or redact_url(settings.mlflow.tracking_uri.get_secret_value()),
        },
        "token_file": str(settings.security.token_file),
        "lake": settings.lake.root,
        "logs": str(settings.home / "logs"),
        "timings_s": stages.timings,
    }


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
        ranker_model=RANKER_NAME,
        ranker_recent_views=RECENT_VIEWS_FEATURE,
        ranker_category_activity=CATEGORY_ACTIVITY_FEATURE,
    )
    serve.run(build_app(args), name=_SERVE_APP, route_prefix="/")
    return f"http://{settings.serve.host}:{settings.serve.port}"


def _predict(settings: EntaiSettings, url: str, rows: pd.DataFrame) -> list[dict[str, Any]]:
    token = settings.security.token_file.read_text().strip()
    sample = rows.drop_duplicates(["user_id"]).sample(5, random_state=1)
    body = {
        "entities": {"user_id": sample["user_id"].tolist(), "category": sample["category"].tolist()}
    }
    payload = post_json(url, f"/v1/predict/{MODEL_NAME}", token, body)
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
        services = Services.of(settings)
        for name in service_names(settings):
            handle = services.find(name)
            if handle is not None:
                ray.kill(handle)


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
    _print_ranker(console, summary["ranker"])
    live = summary["live"]
    console.print(
        f"live: {live['events']} views of user {live['user_id']} over POST /v1/events -> "
        f"user_views_7d {live['user_views_7d']['before']} -> {live['user_views_7d']['after']}, "
        f"readable online [bold]{live['freshness_s']:.2f} s[/bold] after the 202 "
        "(the platform's stream workers, no batch job)"
    )
    _print_burst(console, live["burst"])
    _print_shoppers(console, live["shoppers"])
    _print_monitoring(console, summary["monitoring"], summary["model"]["version"])


def _print_burst(console: Console, burst: dict[str, Any]) -> None:
    table = Table(
        "rank",
        "before",
        "after",
        title=f"User {burst['user_id']} views {len(burst['viewed'])} {burst['category']} "
        f"products (readable online {burst['freshness_s']:.2f} s after the 202): "
        f"recommendations before and after (v{burst['version']}, no context sent)",
    )
    for rank, (was, now) in enumerate(zip(burst["before"], burst["after"], strict=False), 1):
        table.add_row(
            str(rank),
            f"{was['item_id']} ({was['category']})",
            f"{now['item_id']} ({now['category']})",
        )
    console.print(table)


def _print_shoppers(console: Console, shop: dict[str, Any]) -> None:
    console.print(
        f"live ranker: {shop['requests']} shoppers sent {shop['clicks']} clicks and "
        f"{shop['purchases']} purchases through POST /v1/feedback; "
        "GET /v1/monitoring/product_ranker:"
    )
    for w in shop["windows"]:

        def metric(name: str, w: dict[str, Any] = w) -> str:
            value = w[name]
            return "n/a" if value is None else f"{value:.3f}"

        start = datetime.fromtimestamp(w["start_s"], UTC).strftime("%H:%M")
        end = datetime.fromtimestamp(w["end_s"], UTC).strftime("%H:%M")
        console.print(
            f"  window {start}-{end} UTC: {w['requests']} requests, CTR "
            f"[bold]{metric('ctr')}[/bold], precision@{w['k']} {metric('precision')}, "
            f"recall@{w['k']} {metric('recall')}, NDCG@{w['k']} {metric('ndcg')}"
        )


def _print_ranker(console: Console, ranker: dict[str, Any]) -> None:
    k, model, popular = ranker["k"], ranker["model"], ranker["popularity"]
    console.print(
        f"ranker {ranker['name']} v{ranker['version']} (champion through the gates): "
        f"held-out NDCG@{k} [bold]{model['ndcg']:.3f}[/bold] vs popularity "
        f"{popular['ndcg']:.3f}; precision@{k} {model['precision']:.3f} vs "
        f"{popular['precision']:.3f}, recall@{k} {model['recall']:.3f} vs "
        f"{popular['recall']:.3f} ({ranker['held_out_requests']:,} held-out requests)"
    )
    recs = ranker["recommendations"]
    table = Table(
        "rank",
        "item_id",
        "score",
        title=f"Recommendations for user {recs['user_id']} "
        f"(POST /v1/recommend/{recs['model']}, v{recs['version']})",
    )
    for rank, item in enumerate(recs["items"], start=1):
        table.add_row(str(rank), str(item["item_id"]), f"{item['score']:.3f}")
    console.print(table)


def _print_running(
    console: Console, summary: dict[str, Any], owner: Owner, token: str | None
) -> None:
    """The closing lines of a demo left running: how to stop it, where to look, a token."""
    import ray

    if owner != "caller":
        ray.shutdown()  # this process's connection only; the platform stays
        console.print("entai is running: `entai status` shows it, `entai down` stops it.")
    urls = summary["urls"]
    for name, url in (
        ("API", urls["api"]),
        ("OpenAPI", urls["docs"]),
        ("Ray dashboard", urls["dashboard"]),
        ("MLflow UI", urls["mlflow"]),
    ):
        console.print(Text(f"{name + ':':15}{url}"))
    if token is not None:
        console.print(Text(f"{'token:':15}{token}"))
        console.print(
            Text(
                f"{'':15}(principal {_APP_PRINCIPAL}: predictions only, expires in 24 h; "
                "`entai tokens create` makes others)",
                style="dim",
            )
        )


def _print_monitoring(console: Console, act: dict[str, Any], champion: int) -> None:
    stable, drift, challenger = act["stable"], act["drift"], act["challenger"]
    levels = " -> ".join(f"{a['level'].upper()} ({a['window_id']})" for a in drift["alerts"])
    console.print(
        f"monitoring: {stable['windows']} stable windows, {stable['drifted']} with dataset "
        f"drift; after the {act['shift']['category']} shift, {drift['drifted']} of "
        f"{drift['windows']} windows drifted: [bold]{levels or 'no alert'}[/bold]"
    )
    if "skipped" in challenger:
        console.print(Text(f"not retrained: {challenger['skipped']}; champion v{champion} stays"))
        return
    console.print(
        f"retrained: challenger [bold]v{challenger['version']}[/bold] "
        f"(valid AUC {challenger['valid_auc']:.3f}, reason: {challenger['reason']}); "
        f"champion v{challenger['champion_after']} (was v{champion}) until someone runs "
        f"`entai models promote {act['model']} {challenger['version']}`"
    )
