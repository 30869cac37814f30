"""GCS fault tolerance on the machine's Redis: running actors serve while the GCS is
down, and after its restart the cluster's tables (named actors) come back from Redis.

The head runs in a subprocess (``gcs_restart.py``) with a private RAY_TMPDIR and its
own Redis namespace, whose keys are deleted afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("gcs_restart.py")


@pytest.fixture
def gcs_namespace(redis_url: str) -> Iterator[str]:
    import redis

    namespace = f"entai-gcs-test-{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.timeout(360)
def test_actors_keep_serving_through_a_gcs_restart_on_redis(
    redis_url: str, gcs_namespace: str
) -> None:
    import redis

    proc = subprocess.run(
        [sys.executable, str(SCRIPT), redis_url, gcs_namespace],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(result))  # the figures, for the report (pytest -s)

    assert result["acked_rows"] == 40
    assert result["served_while_down"] is True
    assert result["same_actor"] is True
    assert result["all_acked_readable"] is True
    assert result["new_actor_scheduled"] is True
    client = redis.Redis.from_url(redis_url)
    try:  # the GCS really kept its tables in this Redis namespace
        assert any(True for _ in client.scan_iter(match=f"*{gcs_namespace}*", count=1000))
    finally:
        client.close()
