"""entai's metrics reach Ray's Prometheus endpoint, with their names and tags, and the
shipped dashboard and alert rules read only series that endpoint exports.

The drift monitor actor records predictions, drift statistics, alert levels and the
fairness measures of a window with feedback labels; an
online write and read through :class:`OnlineFeatureClient` record the view's newest
event time, lookups and their latency in this process; the ingress's prediction
latency and errors, and a recommendation's fallback from the store, are recorded
through the facade. Each process reports to its node's
metrics agent every ``metrics_report_interval_ms`` (10 s by default), so the scrape is
retried for a bounded time.
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from credentials import service_of
from promql_names import queried_metrics

from entai.actors.core import METRICS, Metrics
from entai.actors.features import OnlineFeatureClient
from entai.actors.monitoring import start_drift_monitor
from entai.shared.features import FeatureRow, MemoryOnlineStore, entity_key
from entai.shared.monitoring import ReferenceProfile
from entai.shared.settings import EntaiSettings, load_settings

DEADLINE_S = 45.0
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def _family(sample_name: str) -> str:
    """The metric a Prometheus sample belongs to, without ``ray_`` and type suffixes."""
    name = sample_name.removeprefix("ray_")
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name.removesuffix(suffix) in {m.name for m in METRICS}:
            return name.removesuffix(suffix)
    return name


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> EntaiSettings:
    tmp_path = tmp_path_factory.mktemp("metrics")
    return load_settings(home=tmp_path / "home", lake={"root": str(tmp_path / "lake")}).resolved()


@pytest.fixture(scope="module")
def monitor(ray_cluster: Any, settings: EntaiSettings) -> Iterator[Any]:
    handle = start_drift_monitor(settings, f"entai-metrics-{uuid.uuid4().hex[:8]}")
    try:
        yield handle
    finally:
        ray_cluster.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def exported(
    ray_cluster: Any, monitor: Any, settings: EntaiSettings
) -> list[tuple[str, dict[str, str], float]]:
    """The endpoint's samples once every entai series recorded here has reached it."""
    credential = service_of(settings)  # what the Serve replicas present
    model = f"probe-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 500), "prediction": rng.random(500)})
    fairness = {"columns": {"g": {"min_group_size": 10}}}  # fairness per window by g
    ray_cluster.get(
        monitor.register_model.remote(
            model,
            7,
            ReferenceProfile.from_frame(reference).to_dict(),
            feature_columns=["x"],
            window={"count": 200},
            fairness=fairness,
            credential=credential,
        )
    )
    batch = {
        "request_id": [f"r{i}" for i in range(200)],
        "x": rng.normal(3, 1, 200).tolist(),
        "g": ["a", "b"] * 100,
        "prediction": rng.random(200).tolist(),
    }
    closed = ray_cluster.get(monitor.record.remote(model, "b0", batch, credential=credential))
    assert closed is not None and closed.status == "drift"
    labels = {f"r{i}": int(i % 3 == 0) for i in range(200)}
    assert ray_cluster.get(monitor.feedback.remote(model, labels, credential=credential)) == 200

    now = datetime.now(UTC)
    client = OnlineFeatureClient(None, direct_store=MemoryOnlineStore())
    client.write([FeatureRow(model, entity_key({"user_id": 1}), {"f": 1.0}, now, now)])
    client.get_online_features({model: ["f"]}, [{"user_id": 1}, {"user_id": 2}], {})
    Metrics.prediction_latency(model, 7, 0.02)
    Metrics.prediction_error(model, "service_unavailable")
    Metrics.recommend_fallback(model, "timeout")
    Metrics.stream_backlog(model, 3)  # a stream worker's figures, as it records them
    Metrics.stream_events(model, "landed", 5)

    node = next(n for n in ray_cluster.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    wanted = {
        ("entai_predictions", ("model", model), ("version", "7")),
        ("entai_drift_statistic", ("model", model), ("feature", "x")),
        ("entai_drift_statistic", ("model", model), ("feature", "prediction")),
        ("entai_alert_level", ("model", model), ("feature", "x")),
        ("entai_fairness_measure", ("model", model), ("attribute", "g")),
        ("entai_online_lookups", ("view", model), ("status", "present")),
        ("entai_online_lookups", ("view", model), ("status", "not_found")),
        ("entai_online_lookup_latency_s", ("route", "direct"), ("route", "direct")),
        ("entai_prediction_latency_s", ("model", model), ("version", "7")),
        ("entai_stream_backlog", ("source", model), ("source", model)),
        ("entai_stream_events", ("source", model), ("outcome", "landed")),
        ("entai_prediction_errors", ("model", model), ("code", "service_unavailable")),
        ("entai_recommend_fallbacks", ("model", model), ("reason", "timeout")),
        ("entai_feature_event_time_s", ("view", model), ("view", model)),
    }
    seen: set[tuple[Any, ...]] = set()
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        samples = _scrape(url)
        for family, (k1, v1), (k2, v2) in wanted:
            if any(
                _family(name) == family and labels.get(k1) == v1 and labels.get(k2) == v2
                for name, labels, _ in samples
            ):
                seen.add((family, (k1, v1), (k2, v2)))
        if seen == wanted:
            break
        time.sleep(1.0)
    assert seen == wanted, f"missing after {DEADLINE_S}s: {sorted(wanted - seen)}"
    return samples


def test_entai_series_appear_on_the_prometheus_endpoint(
    exported: list[tuple[str, dict[str, str], float]],
) -> None:
    samples = exported
    ours = {_family(name) for name, _, _ in samples if name.startswith("ray_entai_")}
    assert ours == {m.name for m in METRICS}
    for name, labels, _ in samples:
        if _family(name) in {m.name for m in METRICS}:
            spec = next(m for m in METRICS if m.name == _family(name))
            assert set(spec.tag_keys) <= set(labels), (name, labels)


def test_the_dashboard_and_alert_rules_read_only_exported_series(
    exported: list[tuple[str, dict[str, str], float]],
) -> None:
    names = {name for name, _, _ in exported}
    queried = queried_metrics()
    assert queried, "no metric names found in cluster/grafana and cluster/prometheus"
    assert queried <= names, f"queried but not exported: {sorted(queried - names)}"
