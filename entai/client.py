"""The Python SDK and the platform lifecycle behind ``entai up|status|down``.

``entai.connect()`` joins the cluster and returns a :class:`Client` whose
attributes are handles to every service: ``features`` (online reads and writes
through the shard actors), ``registry``, ``governance``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from entai.actors.core import (
    DEFAULT_UI_PORT,
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
from entai.actors.governance import start_governance
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import start_registry
from entai.actors.monitoring import ACTOR_NAME as DRIFT_MONITOR
from entai.actors.monitoring import start_drift_monitor
from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings, load_settings

__all__ = [
    "Client",
    "connect",
    "deploy_serve_config",
    "drift_monitor_service",
    "ensure_platform",
    "governance_service",
    "platform_address",
    "platform_status",
    "registry_service",
    "resolve_token",
    "service_names",
    "start_platform",
    "stop_platform",
]

log = logging.getLogger(__name__)

SERVE_APP = "entai"
_JOINED_FILE = "joined.json"


def service_names(settings: EntaiSettings) -> list[str]:
    """Names of the platform's actors, in start order."""
    from entai.pipelines.training import ACTOR_NAME as RETRAIN_WORKER

    shards = [shard_name(i) for i in range(settings.online_store.num_shards)]
    return [*shards, GOVERNANCE, REGISTRY, DRIFT_MONITOR, RETRAIN_WORKER]


_REGISTRY_READY_S = 180.0


def start_services(settings: EntaiSettings) -> dict[str, Any]:
    """Create (or find) every platform actor on the connected cluster.

    The shards, governance, the model registry, the drift monitor (its clock
    closes idle time windows) and the retraining worker (it runs the monitor's
    retrain requests). Pass settings with absolute paths (``settings.resolved()``).
    """
    from entai.pipelines.training import ACTOR_NAME as RETRAIN_WORKER
    from entai.pipelines.training import start_retrain_worker

    namespace = settings.ray.namespace
    handles: dict[str, Any] = {}
    for i, handle in enumerate(start_shards(settings, namespace)):
        handles[shard_name(i)] = handle
    handles[GOVERNANCE] = start_governance(settings, namespace)
    handles[REGISTRY] = start_registry(settings.mlflow, namespace, policy=settings.registry.policy)
    # The registry creates MLflow's schema on a fresh store; the services after it open
    # the same store, and two processes migrating one new SQLite file at once can fail.
    ray.get(handles[REGISTRY].__ray_ready__.remote(), timeout=_REGISTRY_READY_S)
    handles[DRIFT_MONITOR] = start_drift_monitor(settings, namespace)
    handles[RETRAIN_WORKER] = start_retrain_worker(settings, namespace)
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
    import ray

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
    import ray

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


def platform_address(settings: EntaiSettings) -> str | None:
    """The running platform's Ray address, or None when nothing runs to join.

    The head ``entai up`` started (or the cluster it joined) under this home, else
    ``ray.address`` / ``RAY_ADDRESS``.
    """
    return _address(settings)[0] or ray_target(settings)


def platform_status(settings: EntaiSettings, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """Health of every platform actor, and each Serve deployment's replicas.

    ``services`` lists the actors with their state; ``serve`` holds one
    :class:`~entai.deployments.serve_status.DeploymentReplicas` per deployment of every
    Serve application (empty when Serve is not running); ``mlflow_url`` is the MLflow
    UI's, when one runs.
    """
    import ray

    from entai.deployments.serve_status import read_serve_details, replica_counts

    address, dashboard = _address(settings)
    if address is None:
        return {"running": False, "services": [], "serve": []}
    connect_ray(settings, address=address)
    rows: list[dict[str, str]] = []
    deployments = []
    try:
        for name in service_names(settings):
            try:
                handle: Any = ray.get_actor(name, namespace=settings.ray.namespace)
                ready: Any = handle.__ray_ready__.remote()
                ray.get(ready, timeout=timeout_s)
                state = "ALIVE"
            except ValueError:
                state = "NOT_STARTED"
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
                state = "UNHEALTHY"
            rows.append({"kind": "actor", "name": name, "state": state})
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
        "serve": deployments,
    }


def stop_platform(settings: EntaiSettings) -> bool:
    """Stop the head and MLflow UI ``entai up`` started; on a cluster it joined, remove
    entai's actors and Serve app instead (and nothing else).

    Returns:
        False when there was nothing to stop.
    """
    import ray
    from ray import serve

    address, _ = _address(settings)
    if address is None:
        return stop_mlflow_ui(settings)
    if read_head(settings) is not None:
        # entai's own head: stopping its process group stops every actor and replica
        # on it; removing them one by one first only made `entai down` slower.
        stop_mlflow_ui(settings)
        stop_head(settings)
        return True
    try:
        connect_ray(settings, address=address)
    except ServiceUnavailableError:
        log.warning("cluster not reachable; stopping the local head only")
    else:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
            for name in service_names(settings):
                try:
                    ray.kill(ray.get_actor(name, namespace=settings.ray.namespace))
                except ValueError:
                    continue
        finally:
            ray.shutdown()
    (settings.home / _JOINED_FILE).unlink(missing_ok=True)
    stop_mlflow_ui(settings)
    stop_head(settings)
    return True


@dataclass
class Client:
    """Handles to the platform's services on a connected cluster."""

    settings: EntaiSettings
    features: OnlineFeatureClient
    registry: Any
    governance: Any


def resolve_token(settings: EntaiSettings, token: str | None) -> str:
    """The caller's token: the argument, then $ENTAI_TOKEN, then the admin token file."""
    import os

    from entai.shared.core import AuthenticationError

    if token:
        return token
    if os.environ.get("ENTAI_TOKEN"):
        return os.environ["ENTAI_TOKEN"]
    if settings.security.token_file.exists():
        return settings.security.token_file.read_text().strip()
    raise AuthenticationError(
        "no token: pass token=, set ENTAI_TOKEN, or use the embedded admin token file",
        details={"reason": "missing"},
    )


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
    from entai.actors.governance import AuthCache

    settings = (settings or load_settings()).resolved()
    target = address or _address(settings)[0] or settings.ray.address
    if target is None:
        raise ServiceUnavailableError(
            "no running entai platform: run `entai up` or pass the Ray address"
        )
    secret = resolve_token(settings, token)
    connect_ray(settings, address=target)
    namespace = settings.ray.namespace
    governance = ray.get_actor(GOVERNANCE, namespace=namespace)
    cache = AuthCache.for_actor(governance)

    def authorize(action: str, resources: Sequence[str]) -> None:
        cache.authorize(secret, action, "features")

    shards = [
        ray.get_actor(shard_name(i), namespace=namespace)
        for i in range(settings.online_store.num_shards)
    ]
    return Client(
        settings=settings,
        features=OnlineFeatureClient(shards, authorize=authorize),
        registry=ray.get_actor(REGISTRY, namespace=namespace),
        governance=governance,
    )


class _SyncActor:
    """Calls an actor's methods synchronously: ``proxy.f(x)`` is ``ray.get(h.f.remote(x))``."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Any:
        import ray

        method = getattr(self._handle, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return ray.get(method.remote(*args, **kwargs))

        return call


def governance_service(settings: EntaiSettings) -> Any:
    """The governance service: the running actor if entai is up, else a local instance.

    Only one writer may own the audit log, so when the platform runs, every change
    goes through its GovernanceChecker actor.
    """
    import ray

    from entai.actors.governance import GovernanceChecker

    address, _ = _address(settings)
    if address is None:
        return GovernanceChecker(settings)
    connect_ray(settings, address=address)
    return _SyncActor(ray.get_actor(GOVERNANCE, namespace=settings.ray.namespace))


def registry_service(settings: EntaiSettings) -> Any:
    """The model registry: the running actor if entai is up, else a local instance.

    Going through the actor when it runs wakes the serving replicas that wait on it
    for alias changes at once.
    """
    import ray

    from entai.actors.models import ModelRegistry

    address, _ = _address(settings)
    if address is None:
        return ModelRegistry(settings.mlflow, policy=settings.registry.policy)
    connect_ray(settings, address=address)
    return _SyncActor(ray.get_actor(REGISTRY, namespace=settings.ray.namespace))


def drift_monitor_service(settings: EntaiSettings) -> Any:
    """The running DriftMonitor actor, called synchronously.

    Its state lives in the actor (checkpointed to the lake after every change), so
    there is no local stand-in: reports, acknowledgements and silences go to the actor.

    Raises:
        ServiceUnavailableError: when entai is not up, or the drift monitor is not running.
    """
    address, _ = _address(settings)
    if address is None:
        raise ServiceUnavailableError(
            "entai is not up: run `entai up` first (the drift monitor runs on the platform)"
        )
    connect_ray(settings, address=address)
    try:
        handle = ray.get_actor(DRIFT_MONITOR, namespace=settings.ray.namespace)
    except ValueError as exc:
        raise ServiceUnavailableError(
            "the drift monitor is not running on the platform",
            details={"service": DRIFT_MONITOR},
        ) from exc
    return _SyncActor(handle)


def deploy_serve_config(
    settings: EntaiSettings, config_file: Path, *, timeout_s: float = 300.0
) -> dict[str, str]:
    """Deploy a Serve config file on the running platform, as ``serve deploy`` does.

    Returns each application's status once all are RUNNING.
    """
    import time

    import yaml
    from ray import serve
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient
    from ray.serve.schema import ServeDeploySchema

    head = read_head(settings)
    if head is None:
        raise ServiceUnavailableError("entai is not up: run `entai up` first")
    config = ServeDeploySchema.model_validate(yaml.safe_load(config_file.read_text()))
    ServeSubmissionClient(head.dashboard_url).deploy_applications(
        config.model_dump(exclude_unset=True)
    )
    connect_ray(settings, address=head.address)
    deadline = time.monotonic() + timeout_s
    try:
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
