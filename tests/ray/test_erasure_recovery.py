"""Erasure against dying processes, on Ray: an erasure job whose worker is killed is
reported failed (and can be asked again) instead of running forever, and writes no
audit entry of its own while the one that finishes writes exactly one; memory shards
restarted after an erasure still drop a late write of the erased subject."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from credentials import service_of

from entai.actors.features import OnlineFeatureClient, start_shards
from entai.actors.governance import start_governance
from entai.pipelines.erasure import OnlineStoreEraser, erasure_status, start_erasure
from entai.pipelines.erasure_locks import erasure_lock
from entai.shared.features import FeatureRow, entity_key
from entai.shared.governance import AuditLog, ErasureRequest, Subject
from entai.shared.settings import EntaiSettings, load_settings

pytestmark = pytest.mark.chaos  # kills an erasure worker and shards: `make test-chaos` (CI runs it)

KEY = b"ray-recovery-key-0123456789abcdef"
T = TypeVar("T")


def _settings(tmp: Path) -> EntaiSettings:
    return load_settings(
        home=tmp / "home",
        lake={"root": str(tmp / "lake")},
        online_store={"type": "memory", "num_shards": 2},
        ray={"namespace": f"erasure-recovery-{uuid.uuid4().hex[:8]}"},
        security={"hmac_key": KEY.decode()},
    ).resolved()


def _until(check: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None:
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.2)
    return found


def _finished(settings: EntaiSettings, erasure_id: str) -> dict[str, Any] | None:
    status = erasure_status(settings, erasure_id)
    return None if status["status"] == "running" else status


@pytest.fixture
def platform(ray_cluster: Any, tmp_path: Path) -> Iterator[tuple[EntaiSettings, Any, list[Any]]]:
    settings = _settings(tmp_path)
    shards = start_shards(settings)
    governance = start_governance(settings)
    ray_cluster.get([h.__ray_ready__.remote() for h in [*shards, governance]])
    try:
        yield settings, governance, shards
    finally:
        from ray.experimental import internal_kv

        for handle in [*shards, governance]:
            ray_cluster.kill(handle, no_restart=True)
        with contextlib.suppress(Exception):
            prefix = f"online-tombstones/{settings.ray.namespace}/"
            internal_kv._internal_kv_del(prefix, del_by_prefix=True, namespace="entai")


def test_a_killed_erasure_job_is_failed_and_asked_again_it_finishes_with_one_audit_entry(
    platform: tuple[EntaiSettings, Any, list[Any]],
) -> None:
    import ray

    settings, governance, _ = platform
    admin = settings.security.token_file.read_text().strip()
    raw = Path(settings.lake.root, "raw", "events", "p.parquet")
    raw.parent.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": pa.array([42, 7], pa.int64()), "x": [1.0, 2.0]}), raw)
    request = ErasureRequest({"user_id": 42}, "http", "ticket 21")

    with erasure_lock(settings, "online"):  # the job waits at its first store
        dead = start_erasure(settings, request, caller=admin, lease_s=2.0)
        beat = _until(
            lambda: erasure_status(settings, dead["erasure_id"]).get("worker_pid"),
            "the erasure task's first heartbeat",
        )
        os.kill(int(beat), signal.SIGKILL)  # the Ray worker running the erasure
        failed = _until(
            lambda: _finished(settings, dead["erasure_id"]),
            "the dead erasure reported failed",
            timeout_s=30.0,
        )
    assert failed["status"] == "failed" and "no heartbeat since" in failed["error"]
    assert pq.read_table(raw).num_rows == 2

    again = start_erasure(settings, request, caller=admin, lease_s=10.0)
    done = _until(lambda: _finished(settings, again["erasure_id"]), "the erasure to finish")
    assert done["status"] == "done" and done["complete"] is True, done
    assert pq.read_table(raw)["user_id"].to_pylist() == [7]

    ray.get(governance.flush_audit.remote())
    entries = AuditLog.in_lake(settings.lake.root).query(action="governance:erase")
    audited = [(e.principal, e.decision, e.details.get("erasure_id")) for e in entries]
    assert audited == [("admin", "allow", again["erasure_id"])]


def test_restarted_memory_shards_keep_the_tombstones_against_a_late_write(
    platform: tuple[EntaiSettings, Any, list[Any]],
) -> None:
    import ray
    from ray.exceptions import RayActorError

    settings, _, shards = platform
    credential = service_of(settings)
    online = OnlineFeatureClient(shards, credential=credential)
    before = datetime.now(UTC) - timedelta(minutes=5)
    subject_key, other_key = entity_key({"user_id": 3}), entity_key({"user_id": 4})
    composite = entity_key({"user_id": 3, "category": "books"})
    online.write(
        [FeatureRow("v", k, {"x": 1.0}, before, before) for k in (subject_key, other_key)]
        + [FeatureRow("c", composite, {"x": 1.0}, before, before)]
    )

    receipt = OnlineStoreEraser(settings).erase(Subject.of({"user_id": 3}, KEY))
    assert receipt.status == "erased" and receipt.rows_removed == 2 and receipt.tombstones >= 1

    pids = [ray.get(h.describe.remote())["pid"] for h in shards]
    for handle in shards:
        ray.kill(handle, no_restart=False)

    def restarted(handle: Any, pid: int) -> int | None:
        with contextlib.suppress(RayActorError):
            now: int = ray.get(handle.describe.remote(), timeout=10)["pid"]
            return now if now != pid else None
        return None

    for handle, pid in zip(shards, pids, strict=True):
        _until(lambda h=handle, p=pid: restarted(h, p), "the shard restarted")

    late = before  # dated before the erasure: a replay
    online.write(
        [FeatureRow("v", k, {"x": 9.0}, late, late) for k in (subject_key, other_key)]
        + [FeatureRow("c", composite, {"x": 9.0}, late, late)]
    )
    keys = sorted(
        r.entity_key for h in shards for r in ray.get(h.scan.remote(None, credential=credential))
    )
    assert keys == [other_key]
    dropped = sum(ray.get(h.describe.remote())["tombstoned_writes"] for h in shards)
    assert dropped == 2
    now = datetime.now(UTC)
    online.write([FeatureRow("v", subject_key, {"x": 1.0}, now, now)])  # activity after it
    keys = sorted(
        r.entity_key for h in shards for r in ray.get(h.scan.remote(None, credential=credential))
    )
    assert keys == sorted([other_key, subject_key])
