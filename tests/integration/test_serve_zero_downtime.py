"""Model lifecycle without downtime: alias moves and replica kills under a steady stream.

This module deploys the graph with a Model deployment (``score_in_ingress=False``);
the shipped graph, where the Ingress scores, gets the same two checks in
``test_serve_haproxy.py``, in the cluster's Serve configuration.

A client thread sends predictions back to back while the champion is promoted and
rolled back twice; no request may fail, and each response must name a version that
held ``champion`` during the request (allowing ``SWAP_LAG_S`` for the notification and
swap to reach the replicas). Then one of the two Model replicas is killed under load:
the ingress retries on the surviving replica, so no request fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from test_serve_http import (
    MODEL,
    Platform,
    deploy_platform,
    predict_body,
    teardown_platform,
)

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

SWAP_LAG_S = 2.0


@dataclass
class Stream:
    """Requests sent back to back from a thread: (sent, received, status, version)."""

    platform: Platform
    results: list[tuple[float, float, int, int | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.platform.url, timeout=60.0) as client:
            i = 0
            while not self.stop.is_set():
                sent = time.time()
                try:
                    r = client.post(
                        f"/v1/predict/{MODEL}",
                        json=predict_body(i % 300, "books"),
                        headers=self.platform.headers(),
                    )
                    status = r.status_code
                    version = r.json().get("version") if status == 200 else None
                except httpx.HTTPError:
                    status, version = -1, None
                self.results.append((sent, time.time(), status, version))
                i += 1


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-zd"),
        port=8122,
        shadow=False,
        model_replicas=2,
        score_in_ingress=False,
    )
    yield deployed
    teardown_platform(deployed)


def _streaming(platform: Platform) -> tuple[Stream, threading.Thread]:
    stream = Stream(platform)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return stream, thread


def test_promote_and_rollback_twice_under_load(platform: Platform) -> None:
    assert_swaps_without_downtime(platform)


def assert_swaps_without_downtime(platform: Platform) -> None:
    """Promote and roll back twice under a stream: no failure, only versions that held."""
    import ray

    registry, approver = platform.registry, platform.tokens.approver
    v1, _, _, v4 = sorted(platform.boosters)
    v2 = platform.aliases["challenger"]
    timeline: list[tuple[float, int]] = [(0.0, v1)]  # (time the move started, new holder)
    stream, thread = _streaming(platform)
    time.sleep(3)
    for target in (v2, v4):
        timeline.append((time.time(), target))
        ray.get(registry.promote.remote(MODEL, target, token=approver), timeout=120)
        time.sleep(4)
        timeline.append((time.time(), v1))
        ray.get(registry.rollback.remote(MODEL, token=approver), timeout=120)
        time.sleep(4)
    stream.stop.set()
    thread.join(timeout=120)

    failures = [r for r in stream.results if r[2] != 200]
    assert len(stream.results) > 20
    assert failures == []
    for sent, received, _, version in stream.results:
        held = {
            holder
            for i, (start, holder) in enumerate(timeline)
            if start <= received
            and (i + 1 == len(timeline) or timeline[i + 1][0] + SWAP_LAG_S >= sent)
        }
        assert version in held, (sent, received, version, timeline)
    seen = {r[3] for r in stream.results}
    assert {v1, v2, v4} <= seen  # every move reached the replicas
    moves = ray.get(registry.alias_history.remote(MODEL), timeout=60)[-4:]
    assert [(m["kind"], m["version"], m["by"]) for m in moves] == [
        ("promote", v2, "approver"),
        ("rollback", v1, "approver"),
        ("promote", v4, "approver"),
        ("rollback", v1, "approver"),
    ]  # each move recorded as the approver token's principal


def test_killing_a_model_replica_under_load_loses_no_request(platform: Platform) -> None:
    import ray

    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{platform.app_name}#Model#")
    ]
    assert len(replicas) == 2
    stream, thread = _streaming(platform)
    time.sleep(2)
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    killed_at = time.time()
    ray.kill(victim, no_restart=True)
    time.sleep(15)
    stream.stop.set()
    thread.join(timeout=120)
    after = [r for r in stream.results if r[0] >= killed_at]
    errors = [r for r in stream.results if r[2] != 200]
    assert len(after) > 10
    assert errors == []
