"""The cluster's Serve configuration: HAProxy ingress, scoring in the ingress, Redis store.

Run by ``test_serve_haproxy.py`` in its own process (``python serve_haproxy.py
REDIS_URL KEY_PREFIX``): Serve reads ``RAY_SERVE_ENABLE_HA_PROXY`` once, when its
processes start, so this configuration needs a Ray head of its own (private
RAY_TMPDIR, free ports for HAProxy's stats and metrics frontends). The application is
the one the KubeRay manifests run: two Ingress replicas that look up features in
Redis and score in-process, behind HAProxy. The script checks that HAProxy answers,
that predictions equal the model called directly, promotes and rolls back twice under
a steady stream (no failure, only versions that held ``champion``), then kills one
Ingress replica under load with a client that retries twice.

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RETRIES = 2  # a client's extra attempts after a failed request
KILL_OBSERVE_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RetryingStream:
    """Predictions back to back from a thread, each retried up to RETRIES times.

    ``results`` holds (sent, attempts, final status); ``raw_errors`` counts failed
    attempts, including those a retry then answered.
    """

    url: str
    headers: dict[str, str]
    model: str
    results: list[tuple[float, int, int]] = field(default_factory=list)
    raw_errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            i = 0
            while not self.stop.is_set():
                sent, status, attempts = time.time(), -1, 0
                while attempts <= RETRIES:
                    attempts += 1
                    try:
                        status = client.post(
                            f"/v1/predict/{self.model}",
                            json={"entities": {"user_id": [i % 300], "category": ["books"]}},
                            headers=self.headers,
                        ).status_code
                    except httpx.HTTPError:
                        status = -1
                    if status == 200:
                        break
                    self.raw_errors += 1
                    time.sleep(0.2)
                self.results.append((sent, attempts, status))
                i += 1


def _ingress_replicas(app_name: str) -> list[dict[str, Any]]:
    import ray

    return [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app_name}#Ingress#")
    ]


def _check_predictions(platform: Any) -> int:
    """Predictions for 60 entities equal the champion booster's; returns the count."""
    import httpx
    from test_serve_http import CATEGORIES, MODEL

    users = list(range(60))
    cats = [CATEGORIES[u % 3] for u in users]
    r = httpx.post(
        f"{platform.url}/v1/predict/{MODEL}",
        json={"entities": {"user_id": users, "category": cats}},
        headers=platform.headers(),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    champion = platform.aliases["champion"]
    assert set(body["versions"]) == {champion}, body["versions"]
    for u, c, p in zip(users, cats, body["predictions"], strict=True):
        expected = platform.expected(champion, u, c)
        assert abs(p - expected) <= 1e-6 * max(1.0, abs(expected)), (u, c, p, expected)
    return len(users)


def _predict_request_metrics(platform: Any, expected: int, timeout_s: float = 90) -> dict[str, int]:
    """Serve's HTTP request counter for the predict route, by status code, read from the
    node's metrics page (Ray's export port) once it counts ``expected`` requests.

    With ``RAY_SERVE_HAPROXY_METRICS_ENABLED=0`` (the manifests') the ingress replicas
    record these; nothing else does.
    """
    import httpx
    import ray

    (node,) = [n for n in ray.nodes() if n["Alive"]]
    page = f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"
    sample = re.compile(r"^ray_serve_num_http_requests_total\{(.*)\} ([0-9.e+]+)$")
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = {}
        for line in httpx.get(page, timeout=10).text.splitlines():
            match = sample.match(line)
            if match is None:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels.get("application") == platform.app_name and labels.get(
                "route", ""
            ).startswith("/v1/predict"):
                status = labels.get("status_code", "")
                counts[status] = counts.get(status, 0) + int(float(match.group(2)))
        if sum(counts.values()) >= expected:
            break
        time.sleep(2)
    return counts


def _count_predict_requests(platform: Any) -> dict[str, int]:
    """Twenty predictions and one refused token, then Serve's count of them."""
    import httpx
    from test_serve_http import MODEL

    body = {"entities": {"user_id": [1], "category": ["books"]}}
    with httpx.Client(base_url=platform.url, timeout=30) as client:
        for _ in range(20):
            r = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
            assert r.status_code == 200, r.text
        bad = {"Authorization": "Bearer not-a-token"}
        assert client.post(f"/v1/predict/{MODEL}", json=body, headers=bad).status_code == 401
    return _predict_request_metrics(platform, expected=1 + 20 + 1)


def _kill_one_ingress(platform: Any) -> dict[str, Any]:
    import ray
    from test_serve_http import MODEL

    replicas = _ingress_replicas(platform.app_name)
    assert len(replicas) == 2, replicas
    stream = RetryingStream(platform.url, platform.headers(), MODEL)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    time.sleep(2)
    victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
    killed_at = time.time()
    ray.kill(victim, no_restart=True)
    time.sleep(KILL_OBSERVE_S)
    stream.stop.set()
    thread.join(timeout=60)
    after = [r for r in stream.results if r[0] >= killed_at]
    return {
        "requests": len(stream.results),
        "requests_after_kill": len(after),
        "failed_after_retries": sum(1 for r in stream.results if r[2] != 200),
        "raw_errors": stream.raw_errors,
        "retried_requests": sum(1 for r in stream.results if r[1] > 1),
    }


def run(stats_port: int) -> dict[str, Any]:
    import httpx
    import ray
    from test_serve_http import deploy_platform, teardown_platform
    from test_serve_zero_downtime import assert_swaps_without_downtime

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    home = Path(tempfile.mkdtemp(prefix="entai-haproxy-home-", dir="/tmp"))
    try:
        platform = deploy_platform(
            home,
            port=_free_port(),
            shadow=False,
            ingress_replicas=2,
            score_in_ingress=True,
            # HAProxy's stats and metrics pages bind every interface: accepted explicitly,
            # as the cluster configuration does (a fenced pod network).
            serve_settings={"wildcard_listeners": True},
        )
        try:
            stats = httpx.get(f"http://127.0.0.1:{stats_port}/stats", timeout=10)
            haproxy = stats.status_code == 200 and "HAProxy" in stats.text
            checked = _check_predictions(platform)
            served = _count_predict_requests(platform)
            swaps_start = time.monotonic()
            assert_swaps_without_downtime(platform)
            swaps_s = time.monotonic() - swaps_start
            kill = _kill_one_ingress(platform)
            store = platform.settings.online_store.type
        finally:
            teardown_platform(platform)
    finally:
        ray.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "haproxy_answered": haproxy,
        "online_store": store,
        "predictions_checked": checked,
        "predict_requests_counted": served,
        "swaps_without_downtime": True,
        "swaps_s": round(swaps_s, 1),
        **{f"kill_{k}": v for k, v in kill.items()},
    }


def main() -> None:
    """Entry point: ``python serve_haproxy.py REDIS_URL KEY_PREFIX``."""
    from entai.actors.core import HAPROXY_SERVE_ENV  # no ray.serve: its modes are unread

    redis_url, prefix = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="entai-haproxy-", dir="/tmp")
    stats_port = _free_port()
    os.environ.update(
        {
            "RAY_TMPDIR": tmp,  # Ray's sockets and address file stay private
            "RAY_USAGE_STATS_ENABLED": "0",
            **HAPROXY_SERVE_ENV,  # as the cluster manifests run it
            "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
            # A stopping Ingress replica stays up 30 s by default for HAProxy to drop
            # it. Here Ingress replicas only stop by being killed (the check) or at
            # the teardown, after the last request; the teardown need not wait 30 s.
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
            "ENTAI_ONLINE_STORE__TYPE": "redis",
            "ENTAI_ONLINE_STORE__URL": redis_url,
            "ENTAI_ONLINE_STORE__KEY_PREFIX": prefix,
        }
    )
    sys.path.insert(0, str(HERE))
    try:
        result = run(stats_port)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
