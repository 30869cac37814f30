"""GCS fault tolerance on the machine's Redis: running actors serve while the GCS is
down, and after its restart the cluster's tables (named actors) come back from Redis.

The head runs in a subprocess (``gcs_restart.py``) with a private RAY_TMPDIR and its
own Redis namespace, whose keys are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_keys import delete_redis_keys
from scripts import run_json_script

pytestmark = pytest.mark.chaos  # its own tier: `make test-chaos` (CI runs it)

SCRIPT = Path(__file__).with_name("gcs_restart.py")


@pytest.fixture
def gcs_namespace(redis_url: str) -> Iterator[str]:
    namespace = f"entai-gcs-test-{uuid.uuid4().hex[:8]}"
    yield namespace
    delete_redis_keys(redis_url, f"*{namespace}*")


@pytest.mark.timeout(360)
def test_actors_keep_serving_through_a_gcs_restart_on_redis(
    redis_url: str, gcs_namespace: str
) -> None:
    import redis

    result = run_json_script(SCRIPT, redis_url, gcs_namespace, timeout_s=300)

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
