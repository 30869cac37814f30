"""The Python SDK and the platform lifecycle behind ``entai up|status|down``.

``entai.connect()`` joins the cluster and returns a :class:`Client` whose attributes
are typed handles to the services: ``features`` (online reads and writes through the
shard actors, authorized for the caller's token), ``registry``, ``governance`` and
``monitor`` (call a method by reference: ``client.registry.call(ModelRegistry.versions,
"churn")``, checked by mypy against the service's class).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
from ray.serve.schema import ServeDeploySchema

from entai.actors.bus import PlatformEvents
from entai.actors.core import (
    DEFAULT_UI_PORT,
    ActorService,
    Service,
    connect_ray,
    launch_mlflow_ui,
    ray_target,
    read_head,
    read_mlflow_ui,
    start_head,
    stop_head,
    stop_mlflow_ui,
    wait_for_mlflow_ui,
)
from entai.actors.features import OnlineFeatureClient, shard_name, start_shards
from entai.actors.governance import ACTOR_NAME as GOVERNANCE
from entai.actors.governance import GovernanceChecker, actor_auth_cache, start_governance
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import ModelRegistry, start_registry
from entai.actors.monitoring import ACTOR_NAME as DRIFT_MONITOR
from entai.actors.monitoring import DriftMonitor, start_drift_monitor
from entai.actors.services import Services, governance_here, registry_here, service_governance
from entai.deployments.serve_status import read_serve_details, replica_counts
from entai.pipelines.features import (
    STREAM_WORKER_PREFIX,
    StreamWorker,
    start_stream_workers,
    stream_worker_names,
)
from entai.pipelines.scoring import SCORING_SERVICE, scoring_service
from entai.pipelines.training import ACTOR_NAME as RETRAIN_WORKER
from entai.pipelines.training import start_retrain_worker
from entai.shared import governance as tokens
from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings, check_listeners, load_settings

__all__ = [
    "Client",
    "connect",
    "deploy_serve_config",
    "drift_monitor_service",
    "ensure_platform",
    "governance_service",
    "join_running",
    "platform_address",
    "platform_status",
    "registry_service",
    "resolve_token",
    "running_address",
    "service_names",
    "start_platform",
    "stop_platform",
]

log = logging.getLogger(__name__)

SERVE_APP = "entai"
_JOINED_FILE = "joined.json"


def service_names(settings: EntaiSettings) -> list[str]:
    """Names of the platform's actors, in start order."""
    shards = [shard_name(i) for i in range(settings.online_store.num_shards)]
    return [
        *shards,
        GOVERNANCE,
        REGISTRY,
        DRIFT_MONITOR,
        RETRAIN_WORKER,
        *stream_worker_names(settings),
        SCORING_SERVICE,
    ]


_REGISTRY_READY_S = 180.0


def start_services(settings: EntaiSettings) -> dict[str, Any]:
    """Create (or find) every platform actor on the connected cluster.

    The shards, governance, the model registry, the drift monitor (its clock
    closes idle time windows), the retraining worker (it runs the monitor's
    retrain requests), the stream workers and the scoring service (whose workers
    start and import in the background, so the first ``entai score`` finds them
    warm). The registry and the drift monitor audit through governance,
    which starts first. Pass settings with absolute paths (``settings.resolved()``).
    """
    namespace = settings.ray.namespace
    handles: dict[str, Any] = {}
    for i, handle in enumerate(start_shards(settings, namespace)):
        handles[shard_name(i)] = handle
    handles[GOVERNANCE] = start_governance(settings, namespace)
    handles[REGISTRY] = start_registry(
        settings.mlflow,
        namespace,
        service_governance(settings, REGISTRY),
        policy=settings.registry.policy,
        events=PlatformEvents(settings),
    )
    # The registry creates MLflow's schema on a fresh store; the services after it open
    # the same store, and two processes migrating one new SQLite file at once can fail.
    ray.get(handles[REGISTRY].__ray_ready__.remote(), timeout=_REGISTRY_READY_S)
    handles[DRIFT_MONITOR] = start_drift_monitor(
        settings, namespace, auditor=service_governance(settings, DRIFT_MONITOR)
    )
    handles[RETRAIN_WORKER] = start_retrain_worker(settings, namespace)
    handles.update(start_stream_workers(settings, namespace))
    handles[SCORING_SERVICE] = scoring_service(settings, namespace)
    return handles


def start_platform(
    settings: EntaiSettings,
    *,
    address: str | None = None,
    gcs_port: int = 6390,
    mlflow_port: int | None = DEFAULT_UI_PORT,
    ui_wait_s: float = 60.0,
    stay_connected: bool = False,
) -> dict[str, Any]:
    """Start a local head (or join ``address``), the platform services and the MLflow UI.

    The head and the UI run in their own process groups, recorded under the home, so
    they outlive this process until :func:`stop_platform`. Starting what already runs
    is a no-op: the recorded head and UI are reused, the services found by name.

    Args:
        address: Join this Ray cluster instead of starting a local head.
        gcs_port: GCS port of a new local head.
        mlflow_port: The MLflow UI's port (a free one if taken); None: no UI.
        ui_wait_s: How long to wait for the UI to answer before reporting it as
            still starting (it does not hold up the platform).
        stay_connected: Leave this process connected to the cluster (the caller then
            owns ``ray.shutdown()``).

    Returns:
        ``address``, ``dashboard_url``, ``services``, ``started`` (whether this call
        started the head), ``mlflow_url`` (None without a UI) and ``mlflow_note``
        (why the UI is not answering yet, if it is not).
    """
    settings.check_secure()
    started = False
    if address is None:
        head = read_head(settings)
        if head is None:
            head = start_head(settings, gcs_port=gcs_port)
            started = True
        address, dashboard = head.address, head.dashboard_url
    else:
        dashboard = "(the joined cluster's dashboard)"
        settings.home.mkdir(parents=True, exist_ok=True)
        (settings.home / _JOINED_FILE).write_text(json.dumps({"address": address}))
    connect_ray(settings, address=address)
    ui = None
    try:
        handles = start_services(settings)
        # After the registry is ready: it creates the tracking store's schema.
        ui = launch_mlflow_ui(settings, port=mlflow_port) if mlflow_port else None
        ray.get([h.__ray_ready__.remote() for h in handles.values()], timeout=120)
    finally:
        if not stay_connected:
            ray.shutdown()
    note = None
    if ui is not None:
        try:
            if not wait_for_mlflow_ui(ui, timeout_s=ui_wait_s):
                note = f"still starting; its log: {ui.log_file}"
        except ServiceUnavailableError as exc:
            note = exc.message
    return {
        "address": address,
        "dashboard_url": dashboard,
        "services": list(handles),
        "started": started,
        "mlflow_url": None if ui is None else ui.url,
        "mlflow_note": note,
    }


def ensure_platform(
    settings: EntaiSettings,
    *,
    gcs_port: int = 6390,
    mlflow_port: int | None = DEFAULT_UI_PORT,
) -> dict[str, Any]:
    """Join the running platform, or start one as ``entai up`` does; stay connected.

    The platform joined is the head ``entai up`` started or joined under this home,
    else the cluster of ``RAY_ADDRESS`` / ``ray.address``; its services are started
    where missing. With none of these, a head owned by entai starts (it outlives
    this process until ``entai down``). The caller owns ``ray.shutdown()``.

    Returns:
        What :func:`start_platform` returns; ``started`` says whether this call
        started the head (and so whether stopping it is the caller's business).
    """
    address, dashboard = _address(settings)
    if address is None and ray_target(settings) is None:
        return start_platform(
            settings, gcs_port=gcs_port, mlflow_port=mlflow_port, stay_connected=True
        )
    connect_ray(settings, address=address)
    handles = start_services(settings)
    ray.get([h.__ray_ready__.remote() for h in handles.values()], timeout=120)
    ui = read_mlflow_ui(settings)
    return {
        "address": address or ray_target(settings),
        "dashboard_url": dashboard,
        "services": list(handles),
        "started": False,
        "mlflow_url": None if ui is None else ui.url,
        "mlflow_note": None,
    }


def _address(settings: EntaiSettings) -> tuple[str | None, str]:
    head = read_head(settings)
    if head is not None:
        return head.address, head.dashboard_url
    joined = settings.home / _JOINED_FILE
    if joined.exists():
        return str(json.loads(joined.read_text())["address"]), ""
    return None, ""


def running_address(settings: EntaiSettings) -> str | None:
    """The Ray address of the running platform (``entai up``'s head or the joined one)."""
    return _address(settings)[0]


def join_running(settings: EntaiSettings) -> bool:
    """Connect this process to the running platform, if one runs; whether it did.

    Commands that change platform state call it first, so that they act through the
    platform's services (the audit log's one writer, the shards that hold the online
    rows) rather than on local copies.
    """
    address = running_address(settings)
    if address is None:
        return False
    connect_ray(settings, address=address)
    return True


def platform_address(settings: EntaiSettings) -> str | None:
    """The running platform's Ray address, or None when nothing runs to join.

    The head ``entai up`` started (or the cluster it joined) under this home, else
    ``ray.address`` / ``RAY_ADDRESS``.
    """
    return _address(settings)[0] or ray_target(settings)


def platform_status(settings: EntaiSettings, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Health of every platform actor, and each Serve deployment's replicas.

    ``services`` lists the actors with their state; ``streams`` each stream worker's
    :meth:`~entai.pipelines.features.StreamWorker.status` (its source's backlog: the
    consumer lag, and its counts); ``serve`` holds one
    :class:`~entai.deployments.serve_status.DeploymentReplicas` per deployment of every
    Serve application (empty when Serve is not running); ``mlflow_url`` is the MLflow
    UI's, when one runs.
    """
    address, dashboard = _address(settings)
    if address is None:
        return {"running": False, "services": [], "streams": [], "serve": []}
    connect_ray(settings, address=address)
    rows: list[dict[str, str]] = []
    deployments = []
    services = Services.of(settings)
    try:
        for name in service_names(settings):
            handle: Any = services.find(name)
            if handle is None:
                state = "NOT_STARTED"
            else:
                try:
                    ray.get(handle.__ray_ready__.remote(), timeout=timeout_s)
                    state = "ALIVE"
                except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
                    state = "UNHEALTHY"
            rows.append({"kind": "actor", "name": name, "state": state})
        streams = _stream_status(settings, services, timeout_s)
        try:
            details = read_serve_details()
        except Exception as exc:  # noqa: BLE001 - Serve not answering is a status, not an error
            log.debug("serve status unavailable", extra={"error": repr(exc)})
        else:
            deployments = replica_counts(details) if details is not None else []
    finally:
        ray.shutdown()
    ui = read_mlflow_ui(settings)
    return {
        "running": True,
        "address": address,
        "dashboard_url": dashboard,
        "mlflow_url": None if ui is None else ui.url,
        "services": rows,
        "streams": streams,
        "serve": deployments,
    }


def _stream_status(
    settings: EntaiSettings, services: Services, timeout_s: float
) -> list[dict[str, Any]]:
    """Every stream worker's status: those the settings name, and any other running
    (a demo adds its source's consumers to the platform it joins)."""
    names = sorted({*stream_worker_names(settings), *services.names(STREAM_WORKER_PREFIX)})
    out: list[dict[str, Any]] = []
    for name in names:
        handle = services.find(name)
        if handle is None:
            continue
        try:
            ref = ActorService(name, handle).submit(StreamWorker.status)
            out.append(ray.get(ref, timeout=timeout_s))
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            out.append({"consumer": name, "running": False})
    return out


def stop_platform(settings: EntaiSettings) -> list[str]:
    """Stop the head and MLflow UI ``entai up`` started, and every process left in the
    head's session (Serve's HAProxy among them); on a cluster it joined, remove entai's
    actors and Serve app instead (and nothing else).

    Returns:
        One line per thing stopped, for the console; empty when there was nothing to
        stop.
    """
    address, _ = _address(settings)
    if address is None:
        # No head answers, but one that died may have left processes (and their ports).
        return [*_stop_ui(settings), *stop_head(settings)]
    if read_head(settings) is not None:
        # entai's own head: stopping its process group, then what is left of its
        # session, stops every actor, replica and HAProxy on it; removing them one by
        # one first only made `entai down` slower.
        return [*_stop_ui(settings), *stop_head(settings)]
    stopped = []
    try:
        connect_ray(settings, address=address)
    except ServiceUnavailableError:
        log.warning("cluster not reachable; stopping the local head only")
    else:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
            stopped.append(f"shut down Serve on the cluster at {address}")
            services = Services.of(settings)
            extra = services.names(STREAM_WORKER_PREFIX)
            removed = 0
            for name in dict.fromkeys([*service_names(settings), *extra]):
                handle = services.find(name)
                if handle is not None:
                    ray.kill(handle)
                    removed += 1
            stopped.append(f"removed {removed} entai actors from the cluster at {address}")
        finally:
            ray.shutdown()
    (settings.home / _JOINED_FILE).unlink(missing_ok=True)
    return [*stopped, *_stop_ui(settings), *stop_head(settings)]


def _stop_ui(settings: EntaiSettings) -> list[str]:
    ui = read_mlflow_ui(settings)
    if ui is None or not stop_mlflow_ui(settings):
        return []
    return [f"stopped the MLflow UI at {ui.url}"]


@dataclass
class Client:
    """Typed handles to the platform's services on a connected cluster.

    Attributes:
        settings: The platform's settings.
        features: Online reads and writes, authorized for the caller's token.
        registry: The ModelRegistry service.
        governance: The GovernanceChecker service.
        monitor: The DriftMonitor service.
    """

    settings: EntaiSettings
    features: OnlineFeatureClient
    registry: ActorService[ModelRegistry]
    governance: ActorService[GovernanceChecker]
    monitor: ActorService[DriftMonitor]


def resolve_token(settings: EntaiSettings, token: str | None) -> str:
    """The caller's token: the argument, then $ENTAI_TOKEN, then the admin token file."""
    return tokens.resolve_token(token, settings.security.token_file)


def connect(
    address: str | None = None,
    settings: EntaiSettings | None = None,
    *,
    token: str | None = None,
) -> Client:
    """Join a running platform and return handles to its services.

    Every feature read and write through the returned client is authorized for the
    token's principal (``features:read`` / ``features:write``), decided locally from
    a short-lived copy of the governance state.

    Args:
        address: Ray address; default: the head ``entai up`` started, then settings.
        settings: Platform settings; default: from ``ENTAI_*``.
        token: API token; default: ``$ENTAI_TOKEN``, then the embedded admin token.
    """
    settings = (settings or load_settings()).resolved()
    target = address or _address(settings)[0] or settings.ray.address
    if target is None:
        raise ServiceUnavailableError(
            "no running entai platform: run `entai up` or pass the Ray address"
        )
    secret = resolve_token(settings, token)
    connect_ray(settings, address=target)
    services = Services.of(settings)
    governance = services.governance()
    cache = actor_auth_cache(governance, secret)

    def authorize(action: str, resources: Sequence[str]) -> None:
        # Feature refs (view:feature) when reading, view names when writing: the
        # policy may grant either on some views only, so each view is checked.
        for view in sorted({r.split(":", 1)[0] for r in resources}):
            cache.authorize(secret, action, f"view:{view}")

    return Client(
        settings=settings,
        features=OnlineFeatureClient(services.shards(), authorize=authorize, credential=secret),
        registry=services.registry(),
        governance=governance,
        monitor=services.drift_monitor(),
    )


def governance_service(settings: EntaiSettings) -> Service[GovernanceChecker]:
    """The governance service: the running actor if entai is up, else a local instance.

    Only one writer may own the audit log, so when the platform runs, every change
    goes through its GovernanceChecker actor.
    """
    join_running(settings)
    return governance_here(settings)


def registry_service(settings: EntaiSettings) -> Service[ModelRegistry]:
    """The model registry: the running actor if entai is up, else a local instance.

    Going through the actor when it runs wakes the serving replicas that wait on it
    for alias changes at once.
    """
    join_running(settings)
    return registry_here(settings)


def drift_monitor_service(settings: EntaiSettings) -> ActorService[DriftMonitor]:
    """The running DriftMonitor service.

    Its state lives in the actor (checkpointed to the lake after every change), so
    there is no local stand-in: reports, acknowledgements and silences go to the actor.

    Raises:
        ServiceUnavailableError: when entai is not up, or the drift monitor is not running.
    """
    if not join_running(settings):
        raise ServiceUnavailableError(
            "entai is not up: run `entai up` first (the drift monitor runs on the platform)"
        )
    return Services.of(settings).drift_monitor()


def deploy_serve_config(
    settings: EntaiSettings, config_file: Path, *, timeout_s: float = 300.0
) -> dict[str, str]:
    """Deploy a Serve config file on the running platform, as ``serve deploy`` does.

    Returns each application's status once all are RUNNING.

    Raises:
        ConfigError: the config starts Serve's gRPC proxy (or HAProxy is on), which
            listens on every interface, and ``serve.wildcard_listeners`` is off.
    """
    head = read_head(settings)
    if head is None:
        raise ServiceUnavailableError("entai is not up: run `entai up` first")
    config = ServeDeploySchema.model_validate(yaml.safe_load(config_file.read_text()))
    grpc = config.grpc_options
    grpc_port = grpc.port if grpc is not None and grpc.grpc_servicer_functions else None
    check_listeners(settings.serve.model_copy(update={"grpc_port": grpc_port or None}))
    # Joining first turns on token auth when a token exists: the dashboard refuses
    # the deploy without it (a head `entai up` started has token auth).
    connect_ray(settings, address=head.address)
    try:
        ServeSubmissionClient(head.dashboard_url).deploy_applications(
            config.model_dump(exclude_unset=True)
        )
        deadline = time.monotonic() + timeout_s
        while True:
            apps = serve.status().applications
            states = {name: str(app.status.value) for name, app in apps.items()}
            wanted = {a.name for a in config.applications}
            if wanted <= states.keys() and all(states[n] == "RUNNING" for n in wanted):
                return states
            failed = [n for n in wanted if states.get(n) == "DEPLOY_FAILED"]
            if failed or time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"Serve applications did not start: {states}", details={"states": states}
                )
            time.sleep(1.0)
    finally:
        ray.shutdown()
