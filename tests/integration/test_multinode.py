"""Multi-node on one machine: role placement, then losing every worker loses nothing.

The four-node cluster runs in a subprocess (``multinode_failover.py``) with its own
RAY_TMPDIR, so it never disturbs the session cluster other tests share. Only a cluster
that failed to start is retried (a loaded host can exceed Ray's 30 s node start limit);
every other failure fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scripts import script_env

pytestmark = pytest.mark.chaos  # its own tier: `make test-chaos` (CI runs it)

SCRIPT = Path(__file__).with_name("multinode_failover.py")
STARTUP_FAILED = 75  # the script's "cluster did not start" status: only that is retried
STARTUP_ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 600
# Predictions that may still fail after their three tries: the target, and so far every
# measured run, is 0. A request is only lost if all three tries, 0.2 s apart, hit the
# dying serve worker's replica before Serve's router stops choosing it.
MAX_FAILED_REQUESTS = 2
PLATFORM_ACTORS = {
    "entai-feature-shard-0": "shard",
    "entai-feature-shard-1": "shard",
    "entai-governance": "service",
    "entai-model-registry": "service",
    "entai-drift-monitor": "service",
    "entai-retrain-worker": "service",
    "entai-scoring": "service",
}


@pytest.mark.timeout(STARTUP_ATTEMPTS * ATTEMPT_TIMEOUT_S + 60)
def test_the_platform_survives_losing_every_worker_under_traffic(
    redis_url: str, redis_prefix: str
) -> None:
    for _attempt in range(STARTUP_ATTEMPTS):
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), redis_url, redis_prefix],
            capture_output=True,
            text=True,
            timeout=ATTEMPT_TIMEOUT_S,
            check=False,
            env=script_env(),
        )
        if proc.returncode != STARTUP_FAILED:
            break
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result))  # the figures, for the report (pytest -s)

    # Before the loss: every actor on its role's worker, one Ingress replica on the
    # serve worker and one on the head.
    assert result["placed"] == PLATFORM_ACTORS
    assert result["serve_replicas_before"] == {"Ingress": ["head", "serve"]}
    # Writes: the loss fell mid-stream; none failed, none of the acknowledged lost.
    assert result["acked_before_loss"] < result["total_batches"]
    assert result["failed_writes"] == 0, result["write_failures"]
    assert result["acked_batches"] == result["total_batches"]
    assert result["lost_acked_writes"] == 0
    assert result["writer_finished"] is True
    # Predictions: answered before, during and after; at most a stated few failures.
    assert result["predictions_ok_before_loss"] > 0
    assert result["first_predict_after_removal_s"] is not None
    assert result["predictions_ok_after_recovery"] > 0
    assert result["failed_requests_after_retries"] <= MAX_FAILED_REQUESTS, result
    # Recovery: every actor answering from the head, Serve at target on the head, and
    # the restarted actors answer with their state.
    assert result["full_recovery_s"] is not None, result
    assert result["champion_kept"] is True
    assert result["token_authorized"] is True
    assert result["audit_continues"] is True
    assert result["audit_chain_ok"] is True
    assert result["monitor_knows_model"] is True
    assert result["predict_after_recovery"] == 200
    assert result["prediction_matches_model"] is True
