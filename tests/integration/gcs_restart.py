"""GCS fault tolerance on the external Redis: the head's GCS dies and comes back.

Run by ``test_gcs_restart.py`` in its own process (``python gcs_restart.py REDIS_URL
NAMESPACE``) with a private RAY_TMPDIR. The head keeps its GCS tables in Redis
(``RAY_REDIS_ADDRESS``, under ``RAY_external_storage_namespace``). A FeatureShard
actor takes writes; the GCS process is killed; writes and reads keep flowing straight
to the running actor while the GCS is down; the GCS is started again, reloads its
tables from Redis, and the shard is found again by name and holds every acknowledged
write. Ray's test hooks on the head node (``kill_gcs_server``, ``start_gcs_server``)
stand in for what KubeRay does when it restarts a head pod.

The last line of output is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 20
SHARD = "entai-gcs-probe-shard"


def _rows(start: int, n: int) -> list[Any]:
    from entai.shared.features import FeatureRow, entity_key

    return [
        FeatureRow("user", entity_key({"user_id": i}), {"a": i}, T0, T0)
        for i in range(start, start + n)
    ]


def _stored(handle: Any, upto: int) -> list[Any]:
    import ray

    from entai.shared.features import entity_key

    keys = [entity_key({"user_id": i}) for i in range(upto)]
    result = ray.get(
        handle.read.remote("user", keys, ["a"], ttl=None, now=datetime.now(UTC)), timeout=30
    )
    return list(result.values[0])


def run() -> dict[str, Any]:
    """Start the head on external Redis, kill and restart its GCS, measure."""
    import ray

    from entai.actors.features import FeatureShardActor
    from entai.actors.services import platform_credential
    from entai.shared.settings import MemoryOnlineStoreSettings, load_settings

    # the shards' service secret, under the private directory main() removes
    home = tempfile.mkdtemp(prefix="home-", dir=os.environ.get("RAY_TMPDIR"))
    platform = load_settings(home=home).resolved()
    credential = platform_credential(platform, "gcs-restart")

    ray.init(
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        namespace="entai-gcs",
        _system_config={"gcs_rpc_server_reconnect_timeout_s": 120},
    )
    try:
        shard = FeatureShardActor.options(
            name=SHARD, lifetime="detached", max_restarts=-1, max_task_retries=-1, num_cpus=0
        ).remote(SHARD, MemoryOnlineStoreSettings(num_shards=1), callers=platform)
        acked = ray.get(shard.write.remote(_rows(0, ROWS), credential=credential), timeout=60)

        node = ray._private.worker._global_node
        node.kill_gcs_server()
        down_at = time.monotonic()
        acked += ray.get(shard.write.remote(_rows(ROWS, ROWS), credential=credential), timeout=30)
        served_while_down = _stored(shard, 2 * ROWS)
        down_s = time.monotonic() - down_at

        node.start_gcs_server()
        restarted_at = time.monotonic()
        again = ray.get_actor(SHARD)  # the name lookup needs the GCS's reloaded tables
        after = _stored(again, 2 * ROWS)
        lookup_s = time.monotonic() - restarted_at
        fresh = FeatureShardActor.options(num_cpus=0).remote(
            "fresh", MemoryOnlineStoreSettings(), callers=platform
        )
        scheduled = ray.get(fresh.write.remote(_rows(0, 1), credential=credential), timeout=60) == 1
        ray.kill(shard)
        return {
            "acked_rows": acked,
            "served_while_down": served_while_down == list(range(2 * ROWS)),
            "down_s": round(down_s, 3),
            "same_actor": again._actor_id == shard._actor_id,
            "all_acked_readable": after == list(range(2 * ROWS)),
            "lookup_after_restart_s": round(lookup_s, 3),
            "new_actor_scheduled": scheduled,
        }
    finally:
        ray.shutdown()


def main() -> None:
    """Entry point: ``python gcs_restart.py REDIS_URL NAMESPACE``."""
    redis_url, namespace = sys.argv[1], sys.argv[2]
    parsed = urlparse(redis_url)
    tmp = tempfile.mkdtemp(prefix="entai-gcs-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp  # Ray's sockets and address file stay private
    os.environ["RAY_REDIS_ADDRESS"] = f"{parsed.hostname}:{parsed.port or 6379}"
    os.environ["RAY_external_storage_namespace"] = namespace  # noqa: SIM112 - Ray's spelling
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        result = run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
