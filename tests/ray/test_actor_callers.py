"""The data-plane actors check their callers' credentials themselves (issue 17 item 2).

A started feature shard and drift monitor are called directly, as any code on the
cluster could: with no credential, a forged service credential, and the token of a
role without the permission, every state-changing call (and the shard's bulk dump) is
refused and nothing changes (read back); with a service credential of the platform or
the token of a role that holds the permission, the call goes through.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from credentials import service_of

from entai.actors.features import start_shards
from entai.actors.governance import start_governance
from entai.actors.monitoring import start_drift_monitor
from entai.shared.core import AuthenticationError, PermissionDeniedError
from entai.shared.features import FeatureRow, OnlineBatch, ReadRequest
from entai.shared.governance import service_credential
from entai.shared.monitoring import ReferenceProfile
from entai.shared.settings import EntaiSettings, load_settings

MODEL = "callers-model"
T = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
"""Rows are dated before the test's erasure (tombstones expire after their retention)."""


@dataclass
class Platform:
    settings: EntaiSettings
    shard: Any
    monitor: Any
    tokens: dict[str, str]

    @property
    def service(self) -> str:
        return service_of(self.settings, "erasure")


@pytest.fixture
def platform(ray_cluster: Any, tmp_path: Path) -> Iterator[Platform]:
    settings = load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        ray={"namespace": f"callers-{uuid.uuid4().hex[:8]}"},
        online_store={"type": "memory", "num_shards": 1},
    ).resolved()
    governance = start_governance(settings)
    (shard,) = start_shards(settings)
    monitor = start_drift_monitor(settings)
    try:
        ray_cluster.get([h.__ray_ready__.remote() for h in (governance, shard, monitor)])
        admin = settings.security.token_file.read_text().strip()
        tokens = {"admin": admin}
        for principal in ("app", "analyst", "ml-engineer"):
            token, _ = ray_cluster.get(governance.create_token.remote(admin, principal))
            tokens[principal] = token
        yield Platform(settings, shard, monitor, tokens)
    finally:
        from ray.experimental import internal_kv

        for handle in (monitor, shard, governance):
            ray_cluster.kill(handle, no_restart=True)
        with contextlib.suppress(Exception):  # the memory shard's kept tombstones
            prefix = f"online-tombstones/{settings.ray.namespace}/"
            internal_kv._internal_kv_del(prefix, del_by_prefix=True, namespace="entai")


def _refused(ray_cluster: Any, ref: Any, error: type[Exception]) -> None:
    """The call raised ``error`` in the actor (Ray's task error carries it as its cause)."""
    with pytest.raises(Exception) as raised:
        ray_cluster.get(ref)
    assert isinstance(raised.value, error) or isinstance(
        getattr(raised.value, "cause", None), error
    )


def _bad_credentials(p: Platform, denied_role: str) -> list[tuple[Any, type[Exception]]]:
    """No credential, forged service credentials (another secret; this platform's with a
    wrong MAC) and the token of a role without the permission."""
    other_secret = service_credential(b"not this platform's service secret", "erasure")
    wrong_mac = p.service[:-4] + ("0000" if not p.service.endswith("0000") else "1111")
    return [
        ("", AuthenticationError),
        (None, AuthenticationError),
        (other_secret, AuthenticationError),
        (wrong_mac, AuthenticationError),
        (p.tokens[denied_role], PermissionDeniedError),
    ]


def _value(ray_cluster: Any, p: Platform, key: str) -> Any:
    result = ray_cluster.get(p.shard.read_batch.remote([ReadRequest("v", [key], ["x"], None)], T))
    return result[0].values[0][0]


def test_shard_writes_tombstones_and_scans_need_a_credential(
    ray_cluster: Any, platform: Platform
) -> None:
    p = platform
    batch = OnlineBatch.of_rows("v", [FeatureRow("v", "k1", {"x": 1.0}, T, T)])
    for bad, error in _bad_credentials(p, "app"):  # app may predict, not write features
        _refused(ray_cluster, p.shard.write_batch.remote(batch, credential=bad), error)
    assert _value(ray_cluster, p, "k1") is None  # nothing written

    assert ray_cluster.get(p.shard.scan.remote(None, credential=p.service)) == []
    assert ray_cluster.get(p.shard.write_batch.remote(batch, credential=p.service)) == 1
    row = [FeatureRow("v", "k2", {"x": 2.0}, T, T)]
    assert ray_cluster.get(p.shard.write.remote(row, credential=p.tokens["ml-engineer"])) == 1
    assert (_value(ray_cluster, p, "k1"), _value(ray_cluster, p, "k2")) == (1.0, 2.0)

    erased_at = datetime.now(UTC)
    for bad, error in _bad_credentials(p, "ml-engineer"):  # may write, not erase or dump
        tombstone = p.shard.tombstone.remote(["k1"], erased_at, timedelta(days=1), credential=bad)
        _refused(ray_cluster, tombstone, error)
        _refused(ray_cluster, p.shard.scan.remote(None, credential=bad), error)
        _refused(ray_cluster, p.shard.delete.remote(None, ["k1"], credential=bad), error)
    assert _value(ray_cluster, p, "k1") == 1.0  # not deleted
    replay = [FeatureRow("v", "k1", {"x": 5.0}, T + timedelta(hours=1), T)]
    ray_cluster.get(p.shard.write.remote(replay, credential=p.service))
    assert _value(ray_cluster, p, "k1") == 5.0  # no tombstone was kept

    assert ray_cluster.get(
        p.shard.tombstone.remote(["k1"], erased_at, timedelta(days=1), credential=p.service)
    )
    late = [FeatureRow("v", "k1", {"x": 7.0}, T + timedelta(hours=1, minutes=30), T)]
    assert ray_cluster.get(p.shard.write.remote(late, credential=p.service)) == 0  # erased
    assert ray_cluster.get(p.shard.describe.remote())["tombstoned_writes"] == 1
    rows = ray_cluster.get(p.shard.scan.remote(credential=p.tokens["admin"]))
    assert {r.entity_key for r in rows} <= {"k1", "k2"} and "k2" in {r.entity_key for r in rows}


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "prediction": rng.random(500)})
    return ReferenceProfile.from_frame(frame).to_dict()


def test_monitor_feedback_and_rows_need_a_credential(ray_cluster: Any, platform: Platform) -> None:
    p = platform
    with pytest.raises(TypeError, match="credential"):  # without the keyword: no call at all
        p.monitor.register_model.remote(
            MODEL, 1, _reference(), feature_columns=["x"], window={"count": 100}
        )
    for bad, error in _bad_credentials(p, "analyst"):
        _refused(
            ray_cluster,
            p.monitor.register_model.remote(
                MODEL, 1, _reference(), feature_columns=["x"], window={"count": 100}, credential=bad
            ),
            error,
        )
    assert ray_cluster.get(p.monitor.models.remote()) == []
    ray_cluster.get(
        p.monitor.register_model.remote(
            MODEL,
            1,
            _reference(),
            feature_columns=["x"],
            window={"count": 100},
            credential=p.service,
        )
    )
    rng = np.random.default_rng(1)
    rows = {
        "request_id": [f"r{i}" for i in range(100)],
        "x": rng.normal(size=100).tolist(),
        "prediction": rng.random(100).tolist(),
    }
    for bad, error in _bad_credentials(p, "analyst"):  # an analyst may not predict
        _refused(ray_cluster, p.monitor.record.remote(MODEL, "b0", rows, credential=bad), error)
    report = ray_cluster.get(p.monitor.report.remote(MODEL))
    assert report["open_window"]["n"] == 0 and report["windows"] == []
    ray_cluster.get(p.monitor.record.remote(MODEL, "b0", rows, credential=p.tokens["app"]))
    (window,) = ray_cluster.get(p.monitor.report.remote(MODEL))["windows"]
    assert window["n"] == 100 and not window.get("realised")

    labels = {f"r{i}": i % 2 for i in range(100)}
    for bad, error in _bad_credentials(p, "analyst"):
        _refused(ray_cluster, p.monitor.feedback.remote(MODEL, labels, credential=bad), error)
    (window,) = ray_cluster.get(p.monitor.report.remote(MODEL))["windows"]
    assert not window.get("realised")  # no label joined
    assert ray_cluster.get(p.monitor.feedback.remote(MODEL, labels, credential=p.service)) == 100
    (window,) = ray_cluster.get(p.monitor.report.remote(MODEL))["windows"]
    assert window["realised"]["n_labels"] == 100

    for bad, error in _bad_credentials(p, "ml-engineer"):  # erasure needs governance:erase
        _refused(ray_cluster, p.monitor.erase.remote(["r1"], credential=bad), error)
    assert ray_cluster.get(p.monitor.report.remote(MODEL))["predictions_logged"] == 100
    assert ray_cluster.get(p.monitor.erase.remote(["r1"], credential=p.tokens["admin"])) >= 1
    assert ray_cluster.get(p.monitor.report.remote(MODEL))["predictions_logged"] == 99
