"""Shared fixtures: tier markers by directory, the session Ray cluster, real services.

Tiers live in sibling folders (unit, ray, integration, e2e); each test is marked with
its folder's name. The Ray cluster is started once per session, lazily, with
``num_cpus=2`` and token auth left on; only what this session started is stopped.
Tests that need Redis or PostgreSQL fail, never skip, when the server is missing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from redis_keys import delete_redis_keys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Test the Serve mode entai ships: throughput-optimized here, and HAProxy fenced to
# loopback for the session's head (see entai.actors.core.local_serve_env).
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
# Custom metrics reach the Prometheus endpoint within 1 s instead of Ray's 10 s.
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")

# In Serve's direct-ingress mode (on with throughput-optimized Serve) a stopping
# Ingress replica stays up for at least 30 s so that an external load balancer can
# deregister it; every Ingress stop (serve.delete, a scale-down) waits that long. The
# session cluster has no load balancer in front of its replicas, so they drain 2 s.
INGRESS_DRAIN_ENV, INGRESS_DRAIN_S = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2"

TESTS = Path(__file__).parent
TIERS = ("unit", "ray", "integration", "e2e")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def _answering(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail (not skip) with a message saying how to start the missing server."""
    if not _answering(host, port):
        pytest.fail(
            f"{name} is not answering on {host}:{port}; this test needs the real server "
            f"(.ci/run starts it; locally start {name} on that port)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id unique to this test session, for key prefixes and database names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Ray head for the whole session (num_cpus=2, token auth on)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    from entai.actors.core import local_serve_env, release_socket_dir
    from entai.shared.settings import load_settings

    namespace = f"entai-test-{uuid.uuid4().hex[:8]}"
    # Only this head's processes get the short drain and its HAProxy's files and
    # ports; heads that tests start in subprocesses choose their own.
    serve_home = tmp_path_factory.mktemp("serve-home")
    head_env = {
        **local_serve_env(load_settings(home=serve_home)),
        INGRESS_DRAIN_ENV: os.environ.get(INGRESS_DRAIN_ENV, INGRESS_DRAIN_S),
    }
    before = {name: os.environ.get(name) for name in head_env}
    os.environ.update(head_env)
    try:
        for attempt in (1, 2):
            try:
                ray.init(
                    address="local",
                    num_cpus=2,
                    namespace=namespace,
                    include_dashboard=False,
                    log_to_driver=False,
                )
                break
            except Exception as exc:  # Ray raises a bare Exception for this
                # Ray waits a hard-coded 30 s for the raylet; on a loaded 2-core machine
                # that can pass before it registers. Start again once; then fail.
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    try:
        yield ray
    finally:
        ray.shutdown()
        release_socket_dir(load_settings(home=serve_home))


@pytest.fixture(scope="session")
def redis_url(run_id: str) -> str:
    """URL of the machine's real Redis (DB 0; isolate with :func:`redis_prefix`)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_prefix(redis_url: str, run_id: str) -> Iterator[str]:
    """A key prefix unique to one test; every key under it is deleted afterwards."""
    prefix = f"entai-test:{run_id}:{uuid.uuid4().hex[:6]}"
    yield prefix
    delete_redis_keys(redis_url, f"{prefix}*")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the machine's maintenance database on the real PostgreSQL server."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    return f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"


@pytest.fixture(scope="session")
def demo_training_data() -> Callable[..., Path]:
    """Writes demo feature views into a home's offline store; returns the labels file.

    The views are the demo's ``user_category_stats`` and ``user_stats`` computed from a
    generated world; labels (purchase within 7 days) are taken every ``every_days``
    from day 14 on and written as ``<home>/labels.parquet``. ``start`` moves the
    world's history (by default the generator's) to another period.
    """

    def write(
        home: Path,
        *,
        n_users: int,
        days: int,
        seed: int = 7,
        every_days: int = 2,
        start: datetime | None = None,
    ) -> Path:
        from datetime import timedelta

        from entai.demo import features
        from entai.demo.generator import EcommerceWorld, WorldConfig
        from entai.shared.data import Lake
        from entai.shared.features import OfflineStore, compute_view
        from entai.shared.settings import EntaiSettings

        settings = EntaiSettings(home=home).resolved()
        config = WorldConfig(n_users=n_users, days=days, seed=seed)
        if start is not None:  # another period than the generator's default one
            config = WorldConfig(n_users=n_users, days=days, seed=seed, start=start)
        world = EcommerceWorld(config)
        events = world.events()
        store = OfflineStore(Lake(settings.lake.root))
        for view in (features.user_category_stats, features.user_stats):
            store.write(view, compute_view(view, events))
        start = world.config.start
        cutoffs = [start + timedelta(days=d) for d in range(14, days - 6, every_days)]
        labels = home / "labels.parquet"
        world.label_rows(events, cutoffs, timedelta(days=7)).to_parquet(labels, index=False)
        return labels

    return write
