"""What the serving benchmarks share: the Serve modes, the closed-loop load and its
figures, the reference app, entai's platform in a child process, and the predict world.

``bench/serve.py``, ``bench/explain.py``, ``bench/recommend.py`` and (for its champion)
``bench/freshness.py`` import it (run as scripts, their folder is on ``sys.path``). The
predict world is ``bench/serve.py``'s: one XGBoost model (50 trees of depth 5 over the
demo's 12 features) and random feature rows for 1,000 users x 3 categories.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from entai.actors.core import HAPROXY_SERVE_ENV

# Serve's modes, read from the environment when Ray's workers start. "haproxy" is the
# cluster manifests' (HAProxy's pages on every interface); "laptop" is a local head's
# (HAProxy fenced to loopback), whose environment names files under the case's home:
# the child sets it (serve_mode_env) before it starts Ray.
MODES: dict[str, dict[str, str]] = {
    "default": {},
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "haproxy": HAPROXY_SERVE_ENV,
    "laptop": {},
}
USERS = 1_000
CATS = ("books", "games", "tools")
MODEL = "bench_model"
REDIS_URL = "redis://127.0.0.1:6379/0"


# -- load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One closed-loop run: its length, failed requests, latencies (ms), and answers
    with status 200 that the caller's check refused."""

    seconds: float
    errors: int
    latencies_ms: np.ndarray
    refused: int = 0

    @property
    def rps(self) -> float:
        return round(len(self.latencies_ms) / self.seconds, 1) if self.seconds else 0.0


async def closed_loop(
    url: str,
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
    body: Callable[[np.random.Generator], dict[str, Any]],
    accept: Callable[[bytes], bool] | None = None,
) -> Phase:
    """``concurrency`` workers, each posting the next ``body`` as soon as the last answered.

    aiohttp: httpx's client tops out near 160 requests/s here, which would measure the
    load generator rather than the server.
    """
    import aiohttp

    latencies: list[float] = []
    errors = refused = 0
    rng = np.random.default_rng(2)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal errors, refused
            while time.perf_counter() < deadline:
                payload = body(rng)
                start = time.perf_counter()
                async with client.post(url, json=payload, headers=headers) as r:
                    answer = await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - start)
                if r.status == 200 and accept is not None:
                    refused += not accept(answer)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
    return Phase(took, errors, np.asarray(latencies) * 1000, refused)


def summary(phases: list[Phase]) -> dict[str, Any]:
    """Requests, errors, requests/s, p50 and p99 over all the phases together."""
    lat = np.concatenate([p.latencies_ms for p in phases]) if phases else np.zeros(0)
    seconds = sum(p.seconds for p in phases)
    return {
        "requests": len(lat),
        "errors": int(sum(p.errors for p in phases)),
        "rps": round(len(lat) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
    }


def entity_body(rng: np.random.Generator) -> dict[str, Any]:
    """A predict or explain request for one random (user, category) of the predict world."""
    u, c = int(rng.integers(USERS)), CATS[int(rng.integers(3))]
    return {"entities": {"user_id": [u], "category": [c]}}


# -- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def reference_app(work: Path, source: str) -> Iterator[str]:
    """The FastAPI app in ``source`` under one uvicorn worker in ``work``; its base URL.

    The app must answer ``GET /healthz``.
    """
    (work / "ref_app.py").write_text(source)
    port = free_port()
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    proc = subprocess.Popen(
        [uvicorn, "ref_app:app", "--port", str(port), "--workers", "1", "--log-level", "warning"],
        cwd=work,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_child(script: str, mode: str, args: list[str]) -> dict[str, Any]:
    """Run ``script args`` in Serve mode ``mode``; the JSON object of its last such line.

    Serve's mode is read from the environment when Ray's workers start, so each case
    runs in a child process with its own local Ray. A child that fails gives
    ``{"error": <the end of its output>}``.
    """
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **MODES[mode]}
    cmd = [sys.executable, script, *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr or out.stdout)[-1500:]}
    return dict(json.loads(lines[-1]))


# -- the platform (inside a child) ---------------------------------------------------


def serve_mode_env(mode: str, settings: Any) -> None:
    """Inside a child, before Ray starts: the environment of a mode that needs the
    case's settings (``laptop``: what a local head runs, entai's ``local_serve_env``)."""
    if mode == "laptop":
        from entai.actors.core import local_serve_env

        os.environ.update(local_serve_env(settings))


@contextmanager
def platform(settings: Any) -> Iterator[str]:
    """A local Ray (num_cpus=2, no dashboard) with the governance actor; an app token.

    Ray is shut down on leaving.
    """
    import ray

    from entai.actors.governance import start_governance

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace=settings.ray.namespace)  # fmt: skip
    try:
        governance = start_governance(settings, settings.ray.namespace)
        ray.get(governance.__ray_ready__.remote(), timeout=120)
        admin = Path(settings.security.token_file).read_text().strip()
        token, _ = ray.get(governance.create_token.remote(admin, "app"), timeout=60)
        yield str(token)
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class BenchRegistry:
    """The registry actor and the governance it registers and promotes through."""

    service: Any  # ActorService[ModelRegistry]
    governed: Any  # _governed.Governed


def champion(
    registry: BenchRegistry, name: str, booster: Any, artifacts: Mapping[str, Any] | None = None
) -> None:
    """Log ``booster`` (and JSON ``artifacts``) to MLflow, register it, promote it to
    champion (an ``ml-engineer`` token registers, an ``approver`` token promotes)."""
    import mlflow
    import mlflow.xgboost

    with mlflow.start_run():
        for path, content in (artifacts or {}).items():
            mlflow.log_dict(content, path)
        logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
    registry.governed.champion(registry.service, logged.model_uri, name)


def model_registry(settings: Any) -> BenchRegistry:
    """Start the registry actor (next to the running governance actor) and point this
    process's MLflow at its store."""
    from _governed import POLICY, Governed

    from entai.actors.backends import configure_mlflow
    from entai.actors.core import ActorService
    from entai.actors.models import ACTOR_NAME, start_registry

    governed = Governed.over(settings)
    handle = start_registry(
        settings.mlflow, settings.ray.namespace, governed.auditor, policy=POLICY
    )
    configure_mlflow(settings.mlflow)
    return BenchRegistry(ActorService(ACTOR_NAME, handle), governed)


def serve_app(settings: Any, port: int, model_name: str, **options: Any) -> str:
    """Serve entai's application for ``model_name`` (the demo's propensity feature service,
    no shadow, ``options`` for the rest of ``AppArgs``) on ``port``; its base URL once up."""
    from ray import serve

    from entai.demo import features as demo
    from entai.deployments.app import AppArgs, build_app

    args = AppArgs(
        model_name=model_name,
        feature_service=demo.purchase_propensity.name,
        definitions_module=demo.__name__,
        settings=settings,
        shadow=False,
        **options,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args), name="entai", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    return base


def serve_predict_world(settings: Any, work: Path, port: int, **options: Any) -> str:
    """The predict world on the platform: its features in the shards, its model the
    champion of :data:`MODEL`, entai's app serving it; the app's base URL."""
    write_features(settings)
    champion(model_registry(settings), MODEL, train_model(work / "model.ubj"))
    return serve_app(settings, port, MODEL, **options)


# -- the predict world ---------------------------------------------------------------


def train_model(path: Path) -> Any:
    """The benchmark's XGBoost model over the demo's features, saved to ``path``."""
    import xgboost as xgb

    from entai.demo import features as demo

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2_000, len(demo.MODEL_FEATURES)))
    y = (x[:, 0] + x[:, 5] + rng.normal(size=2_000) > 0).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(demo.MODEL_FEATURES))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 5}, data, 50)
    booster.save_model(str(path))
    return booster


def feature_values() -> dict[tuple[int, str], np.ndarray]:
    """The 12 feature values of each (user, category)."""
    rng = np.random.default_rng(1)
    return {(u, c): rng.normal(size=12) for u in range(USERS) for c in CATS}


def write_features(settings: Any) -> None:
    """Start the online shards and write every (user, category)'s features, fresh."""
    from entai.actors.features import OnlineFeatureClient, start_shards
    from entai.actors.services import platform_credential
    from entai.demo import features as demo
    from entai.shared.features import FeatureRow, entity_key

    now = datetime.now(UTC)
    uc = [f.name for f in demo.user_category_stats.schema]
    us = [f.name for f in demo.user_stats.schema]
    rows = []
    for (u, c), values in feature_values().items():
        rows.append(FeatureRow("user_category_stats", entity_key({"user_id": u, "category": c}),
                               dict(zip(uc, values[:6].tolist(), strict=True)),
                               now - timedelta(hours=1), now))  # fmt: skip
        if c == CATS[0]:
            rows.append(FeatureRow("user_stats", entity_key({"user_id": u}),
                                   dict(zip(us, values[6:].tolist(), strict=True)),
                                   now - timedelta(hours=1), now))  # fmt: skip
    shards = start_shards(settings, settings.ray.namespace)
    OnlineFeatureClient(shards, credential=platform_credential(settings, "bench")).write(rows)


def store_settings(store: str) -> dict[str, Any]:
    """The online store section: SQLite files or memory shards (embedded), or Redis."""
    if store in ("sqlite", "memory"):
        return {"type": store}
    return {"type": "redis", "url": REDIS_URL, "key_prefix": f"entai-bench-{os.getpid()}"}


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
