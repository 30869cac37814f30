"""Two-node Ray cluster on one machine: shards on the shard node, then that node dies.

Run by ``test_multinode.py`` in its own process (``python multinode_failover.py
REDIS_URL KEY_PREFIX``) so its cluster never touches the test session's. It starts a
head (1 CPU, no role label) and a worker labelled ``entai.io/role=shard`` (1 CPU),
places two Redis-backed FeatureShard actors with
:func:`entai.actors.placement.role_options` (a label selector for the shard node, with
a fallback to any node, which is how they come back on the head), streams writes
through the sharded client, removes the worker mid-stream, and checks every
acknowledged write in Redis afterwards. Ray's files (and its "current cluster" address
file) go to a private RAY_TMPDIR, so no other Ray user on the machine is affected.

The last line of output is one JSON object with the figures. Exit status 75 means
the cluster itself did not start (Ray allows a node 30 s to register, which a loaded
host can exceed); the caller may try again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

NUM_SHARDS = 2
ROWS_PER_BATCH = 4
REMOVE_AFTER_BATCHES = 30
TOTAL_BATCHES = 150
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STARTUP_FAILED = 75  # EX_TEMPFAIL: the caller may run the script again


class ClusterStartError(RuntimeError):
    """The local cluster did not come up (its processes die when this process exits)."""


def _node_of(ray: Any, handle: Any) -> str:
    """The node id an actor lives on now (from the GCS actor table; no dashboard)."""
    from ray._private import state

    info = state.actors(handle._actor_id.hex())
    return str(info["Address"]["NodeID"])


def _wait_on_node(ray: Any, handles: list[Any], node_id: str, timeout_s: float) -> bool:
    """Wait until every shard answers a call from ``node_id``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get([h.describe.remote() for h in handles], timeout=10)
        except Exception:  # noqa: BLE001 - a shard still restarting: try again
            time.sleep(0.1)
            continue
        if all(_node_of(ray, h) == node_id for h in handles):
            return True
        time.sleep(0.1)
    return False


def run(redis_url: str, key_prefix: str) -> dict[str, Any]:
    """Start the cluster, place shards, lose the worker, measure; always clean up."""
    import ray
    from ray.cluster_utils import Cluster

    from entai.actors.feature_shard import FeatureShardActor, shard_name
    from entai.actors.online_client import OnlineFeatureClient
    from entai.actors.placement import ROLE_LABEL, role_options
    from entai.actors.redis_store import RedisOnlineStore
    from entai.shared.online import FeatureRow, entity_key
    from entai.shared.settings import RedisOnlineStoreSettings

    store_settings = RedisOnlineStoreSettings(
        num_shards=NUM_SHARDS, url=redis_url, key_prefix=key_prefix
    )
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "include_dashboard": False},
        )
        worker = cluster.add_node(num_cpus=1, labels={ROLE_LABEL: "shard"})
    except Exception as exc:  # Ray gives a node 30 s to register; a loaded host may not
        raise ClusterStartError(str(exc)) from exc
    try:
        ray.init(
            address=cluster.address,
            namespace=f"entai-mn-{uuid.uuid4().hex[:6]}",
            log_to_driver=False,
        )
        head_id = cluster.head_node.node_id
        handles = [
            FeatureShardActor.options(
                name=shard_name(i),
                lifetime="detached",
                max_restarts=-1,
                max_task_retries=-1,
                num_cpus=0,
                **role_options("shard"),
            ).remote(shard_name(i), store_settings)
            for i in range(NUM_SHARDS)
        ]
        ray.get([h.__ray_ready__.remote() for h in handles], timeout=120)
        placed_on_worker = [_node_of(ray, h) == worker.node_id for h in handles]

        client = OnlineFeatureClient(handles)
        acked: list[int] = []
        failed: list[str] = []

        def writer() -> None:
            for batch in range(TOTAL_BATCHES):
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
                    client.write(rows)
                except Exception as exc:  # noqa: BLE001 - counted as a failed write; the test asserts
                    failed.append(f"{type(exc).__name__}: {exc}")
                    continue
                acked.append(batch)

        thread = threading.Thread(target=writer)
        thread.start()
        while len(acked) < REMOVE_AFTER_BATCHES and thread.is_alive():
            time.sleep(0.005)
        acked_before_loss = len(acked)
        removed_at = time.monotonic()
        cluster.remove_node(worker, allow_graceful=False)
        recovered = _wait_on_node(ray, handles, head_id, timeout_s=180)
        recovery_s = time.monotonic() - removed_at
        thread.join(timeout=300)

        direct = RedisOnlineStore(redis_url, key_prefix)
        keys = [
            entity_key({"user_id": b * ROWS_PER_BATCH + j})
            for b in acked
            for j in range(ROWS_PER_BATCH)
        ]
        stored = direct.read("user", keys, ["a"], ttl=None, now=datetime.now(UTC))
        want = [b for b in acked for _ in range(ROWS_PER_BATCH)]
        lost = sum(got != exp for got, exp in zip(stored.values[0], want, strict=True))
        return {
            "nodes": 2,
            "shards": NUM_SHARDS,
            "placed_on_worker": placed_on_worker,
            "recovered_on_head": recovered,
            "recovery_s": round(recovery_s, 3),
            "acked_batches": len(acked),
            "acked_before_loss": acked_before_loss,
            "total_batches": TOTAL_BATCHES,
            "failed_writes": len(failed),
            "failures": failed[:3],
            "lost_writes": lost,
            "writer_finished": not thread.is_alive(),
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


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
