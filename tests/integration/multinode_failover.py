"""Losing every worker node of a four-node cluster under writes and HTTP traffic.

Run by ``test_multinode.py`` in its own process (``python multinode_failover.py
REDIS_URL KEY_PREFIX``) so its cluster never touches the test session's; Ray's files
(and its "current cluster" address file) go to a private RAY_TMPDIR.

The cluster is a head with no role and three workers labelled ``entai.io/role``:
``shard`` (the Redis-backed FeatureShard actors), ``service`` (governance, the model
registry on MLflow/SQLite, the drift monitor and the retraining worker) and ``serve``.
The platform actors are started by :func:`entai.client.start_services`, whose
:func:`entai.actors.core._placement.role_options` label selectors put them on their role's
worker, with a fallback to any node (which is how they come back on the head). The
Serve app's two Ingress replicas are placed with ``role_options("serve")`` and reserve
one logical CPU each: the serve worker has room for one, the other falls back to the
head, so the head keeps a replica while the worker's is lost.

With a write stream through the sharded client and client threads sending HTTP
predictions (each request tried up to :data:`TRIES` times, :data:`BACKOFF_S` apart),
the three workers are killed at once (no graceful drain). The script waits for full
recovery (every platform actor answering from the head; the app's deployments at their
target with every replica RUNNING on the head), keeps the traffic going a little
longer, and checks that the restarted actors reloaded their state: the registry's
champion, the app token and a continuing, verifiable audit chain in governance, the
monitored model in the drift monitor, and every acknowledged write in Redis.

The last line of output is one JSON object with the figures. Exit status 75 means
the cluster itself did not start (Ray allows a node 30 s to register, which a loaded
host can exceed); the caller may try again.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from serve_graph import options_app
from test_serve_http import (
    CATEGORIES,
    USERS,
    _train,
    _write_features,
    predict_body,
    register_booster,
)

MODEL = "nodeloss_model"
NUM_SHARDS = 2
SERVE_REPLICAS = 2
# Logical CPUs: a replica reserves one, so the serve worker holds one replica and the
# other falls back to the head, which has room for both (Ray starts a worker process
# per actor whatever it reserves; the platform actors reserve none).
WORKER_CPUS = {"shard": 0, "service": 0, "serve": 1}
CLIENTS = 2
TRIES = 3
BACKOFF_S = 0.2
REQUEST_TIMEOUT_S = 60.0  # a request may wait for governance's restart (see report)
TOTAL_BATCHES = 300
ROWS_PER_BATCH = 4
WRITE_PAUSE_S = 0.05
REMOVE_AFTER_BATCHES = 40
REMOVE_AFTER_PREDICTIONS = 20
TRAFFIC_AFTER_RECOVERY_S = 3.0
RECOVERY_TIMEOUT_S = 240.0

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STARTUP_FAILED = 75  # EX_TEMPFAIL: the caller may run the script again


class ClusterStartError(RuntimeError):
    """The local cluster did not come up (its processes die when this process exits)."""


def _node_of(ray: Any, handle: Any) -> str:
    """The node id an actor lives on now (from the GCS actor table; no dashboard)."""
    from ray._private import state

    info = state.actors(handle._actor_id.hex())
    return str(info["Address"]["NodeID"])


class WriteStream:
    """Batches of rows written through the sharded client from a thread.

    Batch ``b`` writes feature ``a = b`` for entities ``user_id`` ``b * ROWS_PER_BATCH``
    onwards (view ``user``); a batch is acknowledged when ``client.write`` returned.

    Args:
        client: The sharded online client the writes go through.
        total_batches: How many batches to write.
        pause_s: Pause after each batch (spreads the stream over a node loss).
    """

    def __init__(self, client: Any, total_batches: int, pause_s: float = 0.0) -> None:
        self._client = client
        self.total_batches = total_batches
        self._pause_s = pause_s
        self.acked: list[int] = []
        self.failed: list[str] = []
        self._thread = threading.Thread(target=self._write, name="write-stream", daemon=True)

    def _write(self) -> None:
        from entai.shared.features import FeatureRow, entity_key

        for batch in range(self.total_batches):
            rows = [
                FeatureRow(
                    "user",
                    entity_key({"user_id": batch * ROWS_PER_BATCH + j}),
                    {"a": batch},
                    T0,
                    T0,
                )
                for j in range(ROWS_PER_BATCH)
            ]
            try:
                self._client.write(rows)
            except Exception as exc:  # noqa: BLE001 - counted as a failed write; the test asserts
                self.failed.append(f"{type(exc).__name__}: {exc}")
                continue
            self.acked.append(batch)
            time.sleep(self._pause_s)

    def start(self) -> None:
        self._thread.start()

    def wait_for(self, batches: int) -> None:
        """Block until ``batches`` are acknowledged (or the stream ended)."""
        while len(self.acked) < batches and self._thread.is_alive():
            time.sleep(0.005)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout=timeout_s)

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def lost_writes(self, store: Any) -> int:
        """Acknowledged rows whose value is not in ``store`` (a direct Redis store)."""
        from entai.shared.features import entity_key

        keys = [
            entity_key({"user_id": b * ROWS_PER_BATCH + j})
            for b in self.acked
            for j in range(ROWS_PER_BATCH)
        ]
        stored = store.read("user", keys, ["a"], ttl=None, now=datetime.now(UTC))
        want = [b for b in self.acked for _ in range(ROWS_PER_BATCH)]
        return sum(got != exp for got, exp in zip(stored.values[0], want, strict=True))


@dataclass
class Traffic:
    """HTTP predictions from :data:`CLIENTS` threads, each retried up to :data:`TRIES`."""

    url: str
    token: str
    ok: list[tuple[float, float]] = field(default_factory=list)  # (started, finished)
    failed: list[tuple[float, list[str]]] = field(default_factory=list)  # (started, errors)
    raw_errors: list[tuple[float, str]] = field(default_factory=list)  # every failed try
    stop: threading.Event = field(default_factory=threading.Event)

    def _request(self, client: httpx.Client, user: int) -> None:
        body = predict_body(user % USERS, CATEGORIES[user % len(CATEGORIES)])
        started = time.monotonic()
        errors: list[str] = []
        for attempt in range(TRIES):
            if attempt:
                time.sleep(BACKOFF_S)
            try:
                response = client.post(f"/v1/predict/{MODEL}", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                if response.status_code == 200:
                    self.ok.append((started, time.monotonic()))
                    break
                errors.append(f"{response.status_code}: {response.text}"[:200])
            self.raw_errors.append((time.monotonic(), errors[-1]))
        else:
            self.failed.append((started, errors))

    def _run(self, offset: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT_S) as c:
            user = offset
            while not self.stop.is_set():
                self._request(c, user)
                user += CLIENTS
                time.sleep(0.01)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._run, args=(i,), name=f"client-{i}", daemon=True)
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        return threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reference() -> dict[str, Any]:
    from entai.demo.features import MODEL_FEATURES
    from entai.shared.monitoring import ReferenceProfile

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, len(MODEL_FEATURES))), columns=MODEL_FEATURES)
    frame["prediction"] = rng.random(500)
    return ReferenceProfile.from_frame(frame).to_dict()


def _serve_rows(app_name: str) -> list[Any]:
    from entai.deployments.serve_status import read_serve_details, replica_counts

    details = read_serve_details()
    if details is None:
        return []
    return [r for r in replica_counts(details) if r.application == app_name]


def _replica_nodes(app_name: str) -> dict[str, list[str]]:
    """Node id of every RUNNING replica, per deployment of ``app_name``."""
    from entai.deployments.serve_status import read_serve_details

    details = read_serve_details()
    app = details.applications.get(app_name) if details is not None else None
    if app is None:
        return {}
    return {
        name: [str(r.node_id) for r in d.replicas if r.state.value == "RUNNING"]
        for name, d in app.deployments.items()
    }


def _serve_recovered(app_name: str, head_id: str) -> bool:
    rows = _serve_rows(app_name)
    nodes = _replica_nodes(app_name)
    return bool(rows) and all(
        r.running == r.target == SERVE_REPLICAS
        and r.status == "HEALTHY"
        and nodes.get(r.deployment) == [head_id] * SERVE_REPLICAS
        for r in rows
    )


class ActorWatch:
    """When each platform actor first answers from a given node (calls kept in flight)."""

    def __init__(self, ray: Any, handles: dict[str, Any], node_id: str, since: float) -> None:
        self._ray, self._handles, self._node_id, self._since = ray, handles, node_id, since
        self.answered_s: dict[str, float] = {}
        self._calls = {name: h.__ray_ready__.remote() for name, h in handles.items()}

    def poll(self, timeout_s: float) -> None:
        """Collect the calls answered within ``timeout_s``; ask again where it failed."""
        if not self._calls:
            time.sleep(timeout_s)  # keeps the caller's polling loop paced
            return
        calls = list(self._calls.values())
        ready, _ = self._ray.wait(calls, num_returns=len(calls), timeout=timeout_s)
        for name, ref in list(self._calls.items()):
            if ref not in ready:
                continue
            del self._calls[name]
            try:
                self._ray.get(ref)
            except Exception:  # noqa: BLE001 - an actor still restarting: asked again
                self._calls[name] = self._handles[name].__ray_ready__.remote()
                continue
            if _node_of(self._ray, self._handles[name]) == self._node_id:
                self.answered_s[name] = round(time.monotonic() - self._since, 3)
            else:
                self._calls[name] = self._handles[name].__ray_ready__.remote()

    @property
    def done(self) -> bool:
        return not self._calls


def _first_after(ok: list[tuple[float, float]], removed_at: float) -> float | None:
    """Seconds from the removal to the first success of a request started after it."""
    done = [end for start, end in ok if start >= removed_at]
    return min(done) - removed_at if done else None


def _longest_gap(ok: list[tuple[float, float]], removed_at: float) -> float:
    """Longest time without a successful answer, from the removal on."""
    ends = sorted([removed_at] + [end for _, end in ok if end >= removed_at])
    return max((b - a for a, b in itertools.pairwise(ends)), default=0.0)


def run(redis_url: str, key_prefix: str) -> dict[str, Any]:
    """Deploy on the workers, lose them under traffic, measure recovery; always clean up."""
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from entai.actors.backends import RedisOnlineStore, configure_mlflow
    from entai.actors.core import ROLE_LABEL, role_options
    from entai.actors.features import OnlineFeatureClient, shard_name
    from entai.actors.governance import ACTOR_NAME as GOVERNANCE
    from entai.actors.models import ACTOR_NAME as REGISTRY
    from entai.actors.monitoring import ACTOR_NAME as MONITOR
    from entai.actors.services import platform_credential
    from entai.client import start_services
    from entai.demo import features as demo
    from entai.deployments.app import AppArgs
    from entai.deployments.grpc_ingress import serve_options
    from entai.shared.models import PromotionPolicy
    from entai.shared.settings import load_settings

    began = time.monotonic()
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": SERVE_REPLICAS, "include_dashboard": False},
        )
        workers = {
            role: cluster.add_node(num_cpus=WORKER_CPUS[role], labels={ROLE_LABEL: role})
            for role in WORKER_CPUS
        }
    except Exception as exc:  # Ray gives a node 30 s to register; a loaded host may not
        raise ClusterStartError(str(exc)) from exc
    home = Path(tempfile.mkdtemp(prefix="entai-nodeloss-home-", dir="/tmp"))
    namespace = f"entai-nodeloss-{uuid.uuid4().hex[:6]}"
    app_name = "entai-nodeloss"
    try:
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False)
        head_id = cluster.head_node.node_id
        settings = load_settings(
            home=home,
            ray={"namespace": namespace},
            serve={"port": _free_port(), "grpc_port": None, "request_timeout_s": 30},
            online_store={
                "type": "redis",
                "url": redis_url,
                "key_prefix": key_prefix,
                "num_shards": NUM_SHARDS,
            },
            # Champion is gated (four-eyes: the approver is not the registrant).
            registry={"policy": PromotionPolicy(min_metrics={}, require_card=False)},
        ).resolved()

        # The platform actors, as `entai up` starts them; features the app reads.
        handles = start_services(settings)
        ray.get([h.__ray_ready__.remote() for h in handles.values()], timeout=180)
        governance, registry, monitor = (handles[n] for n in (GOVERNANCE, REGISTRY, MONITOR))
        placed = {name: _node_of(ray, h) for name, h in handles.items()}
        admin = Path(settings.security.token_file).read_text().strip()
        app_token, trainer, approver = (
            ray.get(governance.create_token.remote(admin, principal), timeout=60)[0]
            for principal in ("app", "ml-engineer", "approver")
        )
        features = _write_features(settings, namespace)

        configure_mlflow(settings.mlflow)
        booster = _train(1)
        version = register_booster(registry, booster, trainer, MODEL)
        ray.get(registry.promote.remote(MODEL, version, token=approver, reason="test"), timeout=60)
        ray.get(
            monitor.register_model.remote(
                MODEL,
                version,
                _reference(),
                feature_columns=list(demo.MODEL_FEATURES),
                window={"count": 100_000},
                credential=platform_credential(settings, "nodeloss"),
            ),
            timeout=60,
        )
        marker = ray.get(
            governance.audit.remote(admin, "nodeloss:before", "cluster", "allow"), timeout=60
        )

        serve.start(proxy_location="HeadOnly", **serve_options(settings.serve))
        args = AppArgs(
            model_name=MODEL,
            feature_service=demo.purchase_propensity.name,
            definitions_module=demo.__name__,
            settings=settings,
            shadow=False,
            score_in_ingress=True,
            tap_flush_interval_s=0.5,
        )
        app = options_app(
            args,
            num_replicas=SERVE_REPLICAS,
            ray_actor_options={"num_cpus": 1, **role_options("serve")},
        )
        serve.run(app, name=app_name, route_prefix="/")
        replicas_before = _replica_nodes(app_name)

        # Traffic: the write stream and the HTTP clients, then lose every worker.
        url = f"http://127.0.0.1:{settings.serve.port}"
        traffic = Traffic(url, app_token)
        clients = traffic.start()
        shards = [handles[shard_name(i)] for i in range(NUM_SHARDS)]
        online = OnlineFeatureClient(shards, credential=platform_credential(settings, "nodeloss"))
        stream = WriteStream(online, TOTAL_BATCHES, WRITE_PAUSE_S)
        stream.start()
        stream.wait_for(REMOVE_AFTER_BATCHES)
        while len(traffic.ok) < REMOVE_AFTER_PREDICTIONS and not traffic.failed:
            time.sleep(0.05)
        acked_before_loss, ok_before_loss = len(stream.acked), len(traffic.ok)
        removed_at = time.monotonic()
        for worker in workers.values():
            cluster.remove_node(worker, allow_graceful=False)

        lost = {w.node_id for w in workers.values()}
        dead_s = serve_s = None
        actors = ActorWatch(ray, handles, head_id, removed_at)
        deadline = removed_at + RECOVERY_TIMEOUT_S
        while not (actors.done and serve_s is not None) and time.monotonic() < deadline:
            if dead_s is None and not any(n["Alive"] for n in ray.nodes() if n["NodeID"] in lost):
                dead_s = time.monotonic() - removed_at
            actors.poll(timeout_s=0.2)
            if serve_s is None and _serve_recovered(app_name, head_id):
                serve_s = time.monotonic() - removed_at
        services_s = max(actors.answered_s.values()) if actors.done else None
        recovered_at = time.monotonic()
        time.sleep(TRAFFIC_AFTER_RECOVERY_S)
        traffic.stop.set()
        for thread in clients:
            thread.join(timeout=REQUEST_TIMEOUT_S * TRIES)
        stream.join(timeout_s=120)

        # The restarted actors answer with the state they reloaded.
        champion = ray.get(registry.resolve.remote(MODEL, "champion"), timeout=60)
        authorized = ray.get(
            governance.authorize.remote(app_token, "predict", f"model:{MODEL}"), timeout=60
        )
        after = ray.get(
            governance.audit.remote(admin, "nodeloss:after", "cluster", "allow"), timeout=60
        )
        found = ray.get(governance.query_audit.remote(admin, action="nodeloss:before"), timeout=60)
        chain = ray.get(governance.verify_audit.remote(admin), timeout=60)
        monitored = ray.get(monitor.models.remote(), timeout=60)
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as c:
            answer = c.post(
                f"/v1/predict/{MODEL}",
                json=predict_body(5, "games"),
                headers={"Authorization": f"Bearer {app_token}"},
            )
        expected = float(booster.inplace_predict(features[(5, "games")][None, :])[0])
        full_s = None if services_s is None or serve_s is None else max(services_s, serve_s)
        return {
            "nodes": 1 + len(workers),
            "placed": {
                name: next((r for r, w in workers.items() if w.node_id == node), "head")
                for name, node in placed.items()
            },
            "serve_replicas_before": {
                d: sorted(
                    next((r for r, w in workers.items() if w.node_id == n), "head") for n in nodes
                )
                for d, nodes in replicas_before.items()
            },
            "acked_before_loss": acked_before_loss,
            "acked_batches": len(stream.acked),
            "total_batches": TOTAL_BATCHES,
            "failed_writes": len(stream.failed),
            "write_failures": stream.failed[:3],
            "lost_acked_writes": stream.lost_writes(RedisOnlineStore(redis_url, key_prefix)),
            "writer_finished": stream.finished,
            "predictions_ok": len(traffic.ok),
            "predictions_ok_before_loss": ok_before_loss,
            "predictions_ok_after_recovery": sum(s >= recovered_at for s, _ in traffic.ok),
            "failed_requests_after_retries": len(traffic.failed),
            "failed_examples": [errors for _, errors in traffic.failed[:3]],
            "raw_errors": len(traffic.raw_errors),
            "raw_error_examples": sorted({e for _, e in traffic.raw_errors})[:5],
            "tries_per_request": TRIES,
            "retry_backoff_s": BACKOFF_S,
            "first_predict_after_removal_s": _round(_first_after(traffic.ok, removed_at)),
            "longest_predict_gap_s": round(_longest_gap(traffic.ok, removed_at), 3),
            "setup_s": round(removed_at - began, 1),
            "nodes_marked_dead_s": _round(dead_s),
            "actor_recovered_s": actors.answered_s,
            "services_recovered_s": _round(services_s),
            "serve_recovered_s": _round(serve_s),
            "full_recovery_s": _round(full_s),
            "champion_kept": champion.version == version,
            "token_authorized": bool(authorized.allowed),
            "audit_continues": after.seq > marker.seq and [e.hash for e in found] == [marker.hash],
            "audit_chain_ok": chain.ok,
            "monitor_knows_model": MODEL in monitored,
            "predict_after_recovery": answer.status_code,
            "prediction_matches_model": answer.status_code == 200
            and abs(answer.json()["predictions"][0] - expected) < 1e-6,
        }
    finally:  # the cluster's shutdown ends Serve with every other process
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(home, ignore_errors=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    """Entry point: ``python multinode_failover.py REDIS_URL KEY_PREFIX``."""
    redis_url, key_prefix = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="entai-mn-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp  # Ray's sockets and address file stay private
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # On a loaded machine a node's agent can take longer than Ray's default to start.
    os.environ.setdefault("RAY_agent_register_timeout_ms", "180000")
    try:
        result = run(redis_url, key_prefix)
    except ClusterStartError as exc:
        print(json.dumps({"startup_failed": True, "error": str(exc)[-300:]}))
        sys.exit(STARTUP_FAILED)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
