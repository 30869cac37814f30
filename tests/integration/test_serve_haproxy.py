"""The Serve configuration the cluster manifests ship: HAProxy ingress, scoring in the
ingress, the Redis online store, two Ingress replicas.

It runs on a Ray head of its own in a subprocess (``serve_haproxy.py``): Serve reads
its ingress mode once, when its processes start, and the session cluster runs the
laptop's mode. Every check the issue asks of the serving path is made there: correct
predictions, promote and roll back twice under a stream with no failure, and one
Ingress replica killed under load with a client that retries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts import run_json_script

pytestmark = pytest.mark.chaos  # its own tier: `make test-chaos` (CI runs it)

SCRIPT = Path(__file__).with_name("serve_haproxy.py")


@pytest.mark.timeout(660)
def test_the_clusters_serve_configuration_swaps_and_survives_a_replica_kill(
    redis_url: str, redis_prefix: str
) -> None:
    result = run_json_script(SCRIPT, redis_url, redis_prefix, timeout_s=600)

    assert result["haproxy_answered"] is True
    assert result["online_store"] == "redis"
    assert result["predictions_checked"] == 60
    # Serve's request metrics still count the predict route, now from the replicas:
    # the check's request, twenty predictions, one refused token
    assert result["predict_requests_counted"] == {"200": 21, "401": 1}
    assert result["swaps_without_downtime"] is True
    assert result["kill_requests_after_kill"] > 20
    assert result["kill_failed_after_retries"] == 0
