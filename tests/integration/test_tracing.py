"""One trace per request across the platform's processes, read back from the trace files.

The Serve platform of :mod:`test_serve_http` (governance, feature shards, registry,
the Ingress scoring in-process) plus a drift monitor watching the model and a stream
worker consuming the ``events`` source, all with tracing on and spans written as JSON
lines under ``<home>/traces``. One predict and one event are sent; for each, the test
finds the one trace its request id is in and checks every span the path must have,
the process that recorded it and its parent. ``entai trace`` prints the predict's tree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from credentials import service_of
from test_serve_http import MODEL, Platform, deploy_platform, predict_body, teardown_platform
from typer.testing import CliRunner

from entai.cli import app as cli
from entai.demo import features as demo
from entai.shared.core import SpanRecord, read_trace
from entai.shared.features import Definitions

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

DEADLINE_S = 90.0


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    import ray

    from entai.actors.bus import QueueBus
    from entai.actors.monitoring import start_drift_monitor
    from entai.pipelines.features import start_stream_workers
    from entai.shared.monitoring import ReferenceProfile

    stream = {
        "contract": "entai.demo.contracts:EVENTS_CONTRACT",
        "definitions_module": demo.__name__,
        "batch_size": 50,
        "block_s": 0.2,
    }
    deployed = deploy_platform(
        tmp_path_factory.mktemp("tracing"),
        port=8131,
        shadow=False,
        settings_overrides={
            "observability": {"tracing": True, "export_interval_ms": 200},
            "streams": {"events": stream},
            # Reads through the shard actors, so the trace crosses into them (the SQLite
            # default reads its files in the replica: no shard hop to follow).
            "online_store": {"type": "memory"},
        },
    )
    settings, namespace = deployed.settings, deployed.settings.ray.namespace
    monitor = start_drift_monitor(settings, namespace)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.normal(size=(500, len(demo.MODEL_FEATURES))), columns=list(demo.MODEL_FEATURES)
    )
    frame["prediction"] = rng.random(500)
    ray.get(
        monitor.register_model.remote(
            MODEL,
            deployed.aliases["champion"],
            ReferenceProfile.from_frame(frame).to_dict(),
            feature_columns=list(demo.MODEL_FEATURES),
            window={"count": 100_000},
            credential=service_of(settings),
        ),
        timeout=120,
    )
    workers = list(start_stream_workers(settings, namespace).values())
    ray.get([w.__ray_ready__.remote() for w in workers], timeout=120)
    queue = QueueBus(namespace=namespace)
    deployed.actors += [monitor, *workers, queue._queue.handle]
    yield deployed
    teardown_platform(deployed)


def _trace(platform: Platform, request_id: str, wanted: set[str]) -> list[SpanRecord]:
    """The request's spans once every wanted name is among them (spans export in batches)."""
    trace_dir = Path(platform.settings.observability.trace_dir)
    started = time.monotonic()
    while True:
        spans = read_trace(trace_dir, request_id)
        if wanted <= {s.name for s in spans} or time.monotonic() - started > DEADLINE_S:
            return spans
        time.sleep(0.5)


def _one(spans: list[SpanRecord], name: str) -> SpanRecord:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _check_parents(spans: list[SpanRecord], edges: list[tuple[str, str, str]]) -> None:
    """Each ``(child, parent, service)``: every span named child is under a span named
    parent and was recorded by that process kind."""
    by_id = {s.span_id: s for s in spans}
    for child, parent, service in edges:
        found = [s for s in spans if s.name == child]
        assert found, f"no {child} span in {sorted({s.name for s in spans})}"
        for s in found:
            assert s.parent_id in by_id, f"{child}'s parent is not in the trace"
            assert by_id[s.parent_id].name == parent, (child, by_id[s.parent_id].name)
            assert s.service == service, (child, s.service)


def test_a_prediction_is_one_trace_from_the_ingress_to_the_drift_monitor(
    platform: Platform,
) -> None:
    with httpx.Client(base_url=platform.url, timeout=60.0) as client:
        response = client.post(
            f"/v1/predict/{MODEL}", json=predict_body(3, "books"), headers=platform.headers()
        )
    assert response.status_code == 200, response.text
    rid = response.json()["request_id"]
    assert response.headers["x-request-id"] == rid
    root_name = "POST /v1/predict/{model}"
    wanted = {
        root_name,
        "entai.authenticate",
        "entai.authorize",
        "entai.online.read",
        "entai.shard.read_batch",
        "entai.score",
        "entai.tap.flush",
        "entai.monitor.record",
    }
    spans = _trace(platform, rid, wanted)
    assert wanted <= {s.name for s in spans}, f"missing {wanted - {s.name for s in spans}}"
    assert len({s.trace_id for s in spans}) == 1
    root = _one(spans, root_name)
    assert root.parent_id is None and root.service == "ingress"
    assert root.request_id == rid
    assert root.attributes["http.response.status_code"] == 200
    _check_parents(
        spans,
        [
            ("entai.authenticate", root_name, "ingress"),
            ("entai.authorize", root_name, "ingress"),
            ("entai.online.read", root_name, "ingress"),
            ("entai.shard.read_batch", "entai.online.read", "feature-shard"),
            ("entai.score", root_name, "ingress"),
            ("entai.tap.flush", root_name, "ingress"),
            ("entai.monitor.record", "entai.tap.flush", "drift-monitor"),
        ],
    )
    views = {
        v for s in spans if s.name == "entai.shard.read_batch" for v in s.attributes["entai.views"]
    }
    assert views == {"user_category_stats", "user_stats"}
    assert _one(spans, "entai.authorize").attributes["entai.resource"] == f"model:{MODEL}"
    monitor = _one(spans, "entai.monitor.record")
    assert monitor.status != "ERROR" and monitor.attributes["entai.model"] == MODEL

    result = CliRunner().invoke(
        cli, ["trace", rid], env={"ENTAI_HOME": str(platform.settings.home)}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(root_name) and "[ingress]" in lines[0]
    assert any("entai.monitor.record" in line and "[drift-monitor]" in line for line in lines)


def test_an_event_is_one_trace_from_the_ingress_to_the_feature_update(
    platform: Platform,
) -> None:
    event = {
        "event_id": f"ev-9-{uuid.uuid4().int % 10**8:08d}",
        "user_id": 3,
        "user_email": "three@example.com",
        "product_id": 11,
        "category": "books",
        "price": 20.0,
        "event_type": "purchase",
        "event_timestamp": datetime.now(UTC).isoformat(),
        "search_query": None,
    }
    with httpx.Client(base_url=platform.url, timeout=60.0) as client:
        response = client.post(
            "/v1/events",
            json={"source": "events", "events": [event]},
            headers=platform.headers(platform.admin),
        )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    rid = response.headers["x-request-id"]
    root_name = "POST /v1/events"
    wanted = {
        root_name,
        "entai.authenticate",
        "entai.authorize",
        "entai.events.publish",
        "entai.bus.publish",
        "entai.stream.process",
        "entai.stream.land",
        "entai.stream.feature_update",
        "entai.online.write",
        "entai.shard.write",
    }
    spans = _trace(platform, rid, wanted)
    assert wanted <= {s.name for s in spans}, f"missing {wanted - {s.name for s in spans}}"
    assert len({s.trace_id for s in spans}) == 1
    root = _one(spans, root_name)
    assert root.parent_id is None and root.request_id == rid
    assert root.attributes["http.response.status_code"] == 202
    _check_parents(
        spans,
        [
            ("entai.authenticate", root_name, "ingress"),
            ("entai.authorize", root_name, "ingress"),
            ("entai.events.publish", root_name, "ingress"),
            ("entai.bus.publish", "entai.events.publish", "ingress"),
            ("entai.stream.process", "entai.bus.publish", "stream-worker"),
            ("entai.stream.land", "entai.stream.process", "stream-worker"),
            ("entai.stream.feature_update", "entai.stream.process", "stream-worker"),
            ("entai.online.write", "entai.stream.feature_update", "stream-worker"),
            ("entai.shard.write", "entai.online.write", "feature-shard"),
        ],
    )
    updated = {s.attributes["entai.view"] for s in spans if s.name == "entai.stream.feature_update"}
    # Every view of the stream's definitions module reads the source: one update each.
    assert updated == {v.name for v in Definitions.from_module(demo.__name__).views.values()}
    assert {"user_category_stats", "user_stats", "user_recent_views"} <= updated
    assert _one(spans, "entai.stream.land").attributes["entai.events"] == 1
