"""Tracing in one process: spans, carriers across a (simulated) process boundary, links,
the JSON-lines files and the tree read back; the ingress's server-span middleware;
nothing recorded when tracing is off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from entai.actors.core import (
    configure_tracing,
    reset_tracing,
    span,
    trace_carrier,
    tracing_enabled,
)
from entai.deployments.request_ids import RequestIdMiddleware
from entai.deployments.tap import PredictionTap, ServedBatch
from entai.deployments.trace_middleware import TracingMiddleware
from entai.shared.core import (
    REQUEST_ID_ATTR,
    SpanRecord,
    read_spans,
    read_trace,
    request_context,
    span_tree,
)
from entai.shared.data import Lake
from entai.shared.settings import ObservabilitySettings, load_settings


@pytest.fixture
def trace_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "traces"
    assert configure_tracing(ObservabilitySettings(tracing=True, trace_dir=directory), "unit")
    try:
        yield directory
    finally:
        reset_tracing()


def _spans(directory: Path) -> dict[str, SpanRecord]:
    reset_tracing()  # flushes the batch processor
    return {s.name: s for s in read_spans(directory)}


def test_off_by_default_records_nothing_and_gives_no_carrier(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path).resolved()
    assert settings.observability.trace_dir == tmp_path.resolve() / "traces"
    assert not configure_tracing(settings.observability, "unit")
    assert not tracing_enabled()
    with span("entai.nothing") as current:
        assert current is None
        assert trace_carrier() is None
        with span("entai.nested", {"k": 1}) as inner:  # the shared no-op nests too
            assert inner is None
    assert span("entai.a") is span("entai.b")  # no object per call on the serving path
    assert not (tmp_path / "traces").exists()


def test_a_carrier_joins_a_span_in_another_process_to_the_trace(trace_dir: Path) -> None:
    with request_context("rid-1"), span("ingress", server=True):
        with span("entai.authorize", {"entai.action": "predict"}):
            pass
        carrier = trace_carrier()
    assert carrier is not None and carrier["traceparent"].startswith("00-")
    # The callee (another process) has no current span: only the carrier links it.
    with span("entai.monitor.record", parent=carrier):
        pass
    spans = _spans(trace_dir)
    root, auth, remote = spans["ingress"], spans["entai.authorize"], spans["entai.monitor.record"]
    assert root.parent_id is None
    assert auth.parent_id == root.span_id and remote.parent_id == root.span_id
    assert {root.trace_id, auth.trace_id, remote.trace_id} == {root.trace_id}
    assert carrier["traceparent"].split("-")[1:3] == [root.trace_id, root.span_id]
    assert root.attributes[REQUEST_ID_ATTR] == "rid-1"
    assert auth.attributes == {"entai.action": "predict", REQUEST_ID_ATTR: "rid-1"}
    assert REQUEST_ID_ATTR not in remote.attributes  # no request bound over there
    assert root.service == "unit" and root.duration_ms > 0


def test_batched_work_is_a_child_of_its_first_member_and_links_the_others(
    trace_dir: Path,
) -> None:
    carriers = []
    for rid in ("a", "b", "c"):
        with request_context(rid), span(f"request-{rid}"):
            carriers.append(trace_carrier())
    with span("entai.tap.flush", parent=carriers[0], links=carriers[1:]):
        pass
    spans = _spans(trace_dir)
    flush = spans["entai.tap.flush"]
    first, b, c = spans["request-a"], spans["request-b"], spans["request-c"]
    assert (flush.trace_id, flush.parent_id) == (first.trace_id, first.span_id)
    assert flush.links == ((b.trace_id, b.span_id), (c.trace_id, c.span_id))
    assert len({first.trace_id, b.trace_id, c.trace_id}) == 3
    assert [s.name for s in read_trace(trace_dir, "a")] == ["request-a", "entai.tap.flush"]
    assert [s.name for s in read_trace(trace_dir, "b")] == ["request-b"]


def test_a_tap_flush_sends_to_the_monitor_inside_the_first_requests_trace(
    trace_dir: Path, tmp_path: Path
) -> None:
    sent: list[dict[str, str] | None] = []
    tap = PredictionTap(
        Lake(str(tmp_path / "lake")), lambda m, b, cols: sent.append(trace_carrier())
    )
    for rid in ("r1", "r2"):
        with request_context(rid), span(f"request-{rid}"):
            tap.submit(
                ServedBatch(
                    rid,
                    "m",
                    ["champion"],
                    [1],
                    ["k"],
                    ("a",),
                    np.ones((1, 1)),
                    [0.5],
                    trace=trace_carrier(),
                )
            )
    assert tap.flush() == 2
    spans = _spans(trace_dir)
    flush, first = spans["entai.tap.flush"], spans["request-r1"]
    assert (flush.trace_id, flush.parent_id) == (first.trace_id, first.span_id)
    assert flush.links == ((spans["request-r2"].trace_id, spans["request-r2"].span_id),)
    assert flush.attributes == {"entai.model": "m", "entai.requests": 2}
    (carrier,) = sent  # what the monitor's record call carries: the flush span
    assert carrier is not None
    assert carrier["traceparent"].split("-")[1:3] == [flush.trace_id, flush.span_id]


def test_an_exception_marks_the_span_as_an_error(trace_dir: Path) -> None:
    with pytest.raises(ValueError, match="boom"), span("entai.score"):
        raise ValueError("boom")
    assert _spans(trace_dir)["entai.score"].status == "ERROR"


def _record(span_id: str, parent: str | None, start: int, name: str) -> SpanRecord:
    return SpanRecord("t" * 32, span_id, parent, name, "svc", start, start + 1_000_000)


def test_the_tree_orders_children_by_start_and_keeps_orphans_as_roots() -> None:
    spans = [
        _record("c2", "root", 30, "second child"),
        _record("root", None, 10, "root"),
        _record("c1", "root", 20, "first child"),
        _record("g1", "c1", 25, "grandchild"),
        _record("o1", "not-exported-yet", 40, "orphan"),
    ]
    trees = span_tree(spans)
    walked = [[(depth, s.name) for depth, s in tree.walk()] for tree in trees]
    assert walked == [
        [(0, "root"), (1, "first child"), (2, "grandchild"), (1, "second child")],
        [(0, "orphan")],
    ]


def test_reading_skips_a_torn_line_and_other_files(tmp_path: Path) -> None:
    good = _record("s1", None, 1, "ok").to_dict() | {"attributes": {REQUEST_ID_ATTR: "r"}}
    (tmp_path / "ingress-h-1.jsonl").write_text(
        json.dumps(good) + "\n" + '{"trace_id": "t", "span_' + "\n"
    )
    (tmp_path / "notes.txt").write_text(json.dumps(good) + "\n")
    assert [s.name for s in read_trace(tmp_path, "r")] == ["ok"]
    assert read_trace(tmp_path, "other") == []
    assert read_trace(tmp_path / "missing", "r") == []


def _app() -> FastAPI:
    api = FastAPI()

    @api.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, str]:
        with span("entai.inner"):
            return {"name": name}

    api.add_middleware(TracingMiddleware)
    api.add_middleware(RequestIdMiddleware)
    return api


def test_the_middleware_names_the_server_span_by_route_and_continues_a_callers_trace(
    trace_dir: Path,
) -> None:
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with TestClient(_app()) as client:
        response = client.get(
            "/v1/models/churn", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"}
        )
        missing = client.get("/nowhere")
    assert response.status_code == 200 and missing.status_code == 404
    rid = response.headers["x-request-id"]
    _spans(trace_dir)  # flush
    server, inner = read_trace(trace_dir, rid)
    assert server.name == "GET /v1/models/{name}"
    assert server.attributes["http.route"] == "/v1/models/{name}"
    assert server.attributes["http.response.status_code"] == 200
    assert (server.trace_id, server.parent_id) == (caller_trace, caller_span)
    assert inner.name == "entai.inner" and inner.parent_id == server.span_id
    (unrouted,) = [s for s in read_spans(trace_dir) if s.attributes.get("url.path") == "/nowhere"]
    assert unrouted.name == "GET /nowhere"
    assert unrouted.attributes["http.response.status_code"] == 404
