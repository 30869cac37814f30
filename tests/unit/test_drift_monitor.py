"""The DriftMonitor plain class: windows, idempotent retries, restarts, alerts, feedback."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alert_sinks import Sink
from credentials import SERVICE, callers
from governed import Governed
from in_process_bus import InProcessBus

from entai.actors.bus import PlatformEvents
from entai.actors.core import Metrics
from entai.actors.core import _metrics as metrics_module
from entai.actors.governance import GovernanceChecker
from entai.actors.monitoring import DriftMonitor
from entai.shared.core import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from entai.shared.data import PlatformEventKind
from entai.shared.monitoring import ReferenceProfile, RetrainRequest
from entai.shared.settings import EntaiSettings, load_settings

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Auditor:
    """Records the monitor's audit entries; tells who a token is through a real
    checker when a test gives it one (``governance``), else refuses every token."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self.principals: dict[str, str] = {}
        self.governance: GovernanceChecker | None = None

    def principal_for(
        self, token: str, permission: str, resource: str, request_id: str | None = None
    ) -> str:
        if self.governance is None:
            raise AuthenticationError("no governance in this test")
        return self.governance.principal_for(token, permission, resource, request_id)

    def audit(
        self,
        action: str,
        principal: str,
        resource: str,
        decision: str,
        *,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> bool:
        self.entries.append((action, resource, dict(details or {})))
        self.principals[action] = principal
        return True

    def actions(self) -> list[str]:
        return [a for a, _, _ in self.entries]


def _reference(n: int = 3000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "prediction": rng.beta(2, 5, n),
            "label": rng.integers(0, 2, n),
        }
    )
    return ReferenceProfile.from_frame(frame).to_dict()


def _batch(
    start: int, n: int, *, shift: float = 0.0, seed: int = 1, ts: float | None = None
) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed + start)
    return {
        "request_id": [f"r{start + i}" for i in range(n)],
        "entity_key": [f"user{(start + i) % 50}" for i in range(n)],
        "version": [1] * n,
        "x": rng.normal(shift, 1, n).tolist(),
        "c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).tolist(),
        "prediction": rng.beta(2, 5, n).tolist(),
        "ts": [ts if ts is not None else 1000.0 + start + i for i in range(n)],
    }


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return load_settings(home=tmp_path / "home", lake={"root": str(tmp_path / "lake")})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def auditor() -> Auditor:
    return Auditor()


def _monitor(
    settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor, **kwargs: Any
) -> DriftMonitor:
    return DriftMonitor(
        settings, sink=sink, auditor=auditor, clock=clock, **kwargs, callers=callers()
    )


def _register(monitor: DriftMonitor, window: dict[str, Any], **kwargs: Any) -> None:
    monitor.register_model(
        "churn",
        1,
        _reference(),
        feature_columns=["x", "c"],
        window=window,
        alert_policy={"warn_k": 1, "alert_k": 2, "n": 3, "clear_k": 2, "cooldown_s": 3600},
        **kwargs,
        credential=SERVICE,
    )


def _comparable(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Closed windows without wall-clock fields."""
    out = []
    for window in report["windows"]:
        kept = {k: v for k, v in window.items() if k != "closed_at"}
        kept["alerts"] = [{k: v for k, v in a.items() if k != "at"} for a in window["alerts"]]
        out.append(kept)
    return out


@pytest.fixture
def monitor(settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor) -> DriftMonitor:
    m = _monitor(settings, clock, sink, auditor)
    _register(m, {"count": 400})
    return m


def test_count_windows_close_with_exactly_count_rows(monitor: DriftMonitor) -> None:
    assert monitor.record("churn", "b0", _batch(0, 300), credential=SERVICE) is None
    report = monitor.record("churn", "b1", _batch(300, 300), credential=SERVICE)
    assert report is not None
    assert (report.window_id, report.n, report.closed_by) == ("churn/v1/w0", 400, "count")
    assert report.status == "no_drift"
    assert report.start == 1000.0 and report.end == 1399.0
    assert set(report.features) == {"x", "c"}
    assert report.prediction is not None  # the reference profiles the prediction column
    assert report.expected_accuracy is not None and 0.5 < report.expected_accuracy < 1
    state = monitor.report("churn")
    assert state["open_window"]["n"] == 200
    assert state["open_window"]["window_id"] == "churn/v1/w1"


def test_a_retried_batch_is_not_counted_twice_and_gets_the_same_answer(
    monitor: DriftMonitor,
) -> None:
    monitor.record("churn", "b0", _batch(0, 300), credential=SERVICE)
    first = monitor.record("churn", "b1", _batch(300, 300), credential=SERVICE)
    assert monitor.record("churn", "b1", _batch(300, 300), credential=SERVICE) == first
    assert monitor.record("churn", "b0", _batch(0, 300), credential=SERVICE) is None
    assert monitor.report("churn")["open_window"]["n"] == 200
    assert len(monitor.report("churn")["windows"]) == 1


def test_restart_mid_window_gives_the_same_window_results(
    settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor, tmp_path: Path
) -> None:
    batches = [_batch(i * 150, 150, shift=0.5 * (i >= 3)) for i in range(8)]
    other = load_settings(home=tmp_path / "h2", lake={"root": str(tmp_path / "lake2")})
    straight = _monitor(other, clock, Sink(), Auditor())
    _register(straight, {"count": 500, "sample_size": 100})
    for i, batch in enumerate(batches):
        straight.record("churn", f"b{i}", batch, credential=SERVICE)

    interrupted = _monitor(settings, clock, sink, auditor)
    _register(interrupted, {"count": 500, "sample_size": 100})
    for i, batch in enumerate(batches):
        if i in {2, 5}:  # the process dies mid-window; a new one reloads the checkpoint
            interrupted = _monitor(settings, clock, sink, auditor)
        interrupted.record("churn", f"b{i}", batch, credential=SERVICE)
    assert _comparable(interrupted.report("churn")) == _comparable(straight.report("churn"))
    assert interrupted.report("churn")["open_window"] == straight.report("churn")["open_window"]
    assert len(interrupted.report("churn")["windows"]) == 2


def test_time_windows_close_by_event_time_and_by_the_clock(
    settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor
) -> None:
    monitor = _monitor(settings, clock, sink, auditor)
    _register(monitor, {"seconds": 60, "grace_s": 10})
    clock.now = datetime.fromtimestamp(125, UTC)
    assert monitor.record("churn", "b0", _batch(0, 150, ts=120.0), credential=SERVICE) is None
    report = monitor.record("churn", "b1", _batch(150, 150, ts=185.0), credential=SERVICE)
    assert report is not None
    assert (report.window_id, report.n, report.closed_by) == ("churn/v1/w0", 150, "time")
    assert monitor.tick() == []  # [180, 240) is not over until 250 by the clock
    clock.now = datetime.fromtimestamp(250, UTC)
    closed = monitor.tick()
    assert [(r.window_id, r.n, r.closed_by) for r in closed] == [("churn/v1/w1", 150, "clock")]
    assert monitor.report("churn")["open_window"]["n"] == 0


def test_rows_of_other_versions_are_ignored_and_counted(monitor: DriftMonitor) -> None:
    batch = _batch(0, 10)
    batch["version"] = [1] * 6 + [2] * 4
    monitor.record("churn", "b0", batch, credential=SERVICE)
    report = monitor.report("churn")
    assert (report["open_window"]["n"], report["ignored_rows"]) == (6, 4)


def test_register_is_idempotent_and_a_new_version_resets_windows(
    monitor: DriftMonitor, auditor: Auditor
) -> None:
    monitor.record("churn", "b0", _batch(0, 450), credential=SERVICE)
    _register(monitor, {"count": 400})
    assert monitor.report("churn")["open_window"]["n"] == 50
    monitor.register_model(
        "churn",
        2,
        _reference(),
        feature_columns=["x", "c"],
        window={"count": 400},
        credential=SERVICE,
    )
    report = monitor.report("churn")
    assert (report["version"], report["windows"], report["open_window"]["n"]) == (2, [], 0)
    assert report["open_window"]["window_id"] == "churn/v2/w2"  # ids never repeat
    assert auditor.actions().count("monitoring:register") == 2


def test_bad_input_names_the_problem(monitor: DriftMonitor) -> None:
    with pytest.raises(NotFoundError):
        monitor.record("nope", "b0", _batch(0, 5), credential=SERVICE)
    batch = _batch(0, 5)
    del batch["x"]
    with pytest.raises(InvalidInputError) as info:
        monitor.record("churn", "b0", batch, credential=SERVICE)
    assert info.value.details["columns"] == ["x"]
    with pytest.raises(InvalidInputError):
        monitor.register_model(
            "churn",
            1,
            _reference(),
            feature_columns=["zz"],
            window={"count": 5},
            credential=SERVICE,
        )
    with pytest.raises(InvalidInputError):
        monitor.register_model(
            "../x", 1, _reference(), feature_columns=["x"], window={"count": 5}, credential=SERVICE
        )


def test_alerts_follow_hysteresis_and_cooldown_and_reach_sink_and_audit(
    monitor: DriftMonitor, sink: Sink, auditor: Auditor, clock: Clock
) -> None:
    def window(seq: int, shift: float) -> None:
        clock.now += timedelta(minutes=10)
        monitor.record("churn", f"b{seq}", _batch(seq * 400, 400, shift=shift), credential=SERVICE)

    def level() -> str:
        alerts = {tuple(a["key"]): a["level"] for a in monitor.report("churn")["alerts"]}
        return str(alerts[("churn", "x", "wasserstein")])

    window(0, 0.0)
    assert level() == "ok"
    window(1, 2.0)
    assert level() == "warn"
    window(2, 2.0)
    assert level() == "alert"
    window(3, 0.0)
    assert level() == "alert"  # one clean window is not enough (clear_k=2)
    window(4, 0.0)
    assert level() == "warn"  # stepped down to what the last 3 windows imply
    x_events = [e for e in sink.events if e["feature"] == "x"]
    assert [(e["previous"], e["level"]) for e in x_events] == [("ok", "warn"), ("warn", "alert")]
    audited = [d for a, _, d in auditor.entries if a == "monitoring:alert" and d["feature"] == "x"]
    assert [d["level"] for d in audited] == ["warn", "alert", "warn"]  # audit sees every change
    window(5, 2.0)
    window(6, 2.0)  # back up to alert within the cooldown: no new notification
    assert level() == "alert"
    assert len([e for e in sink.events if e["feature"] == "x"]) == 2


def test_acknowledge_and_silence_stop_notifications(
    monitor: DriftMonitor, sink: Sink, auditor: Auditor, settings: EntaiSettings
) -> None:
    governed = Governed(settings)
    auditor.governance = governed.checker
    approver, admin = governed.token("approver"), governed.token("admin")
    with pytest.raises(ConflictError):
        monitor.acknowledge("churn", "x", "wasserstein", approver)
    monitor.record("churn", "b0", _batch(0, 400, shift=2.0), credential=SERVICE)
    with pytest.raises(PermissionDeniedError):  # models:approve is needed, not register
        monitor.acknowledge("churn", "x", "wasserstein", governed.token("ml-engineer"))
    with pytest.raises(AuthenticationError):  # a name is not a credential
        monitor.silence("churn", "*", "dataset", START + timedelta(days=1), "approver")
    assert "monitoring:acknowledge" not in auditor.actions()
    assert "monitoring:silence" not in auditor.actions()
    denied = governed.audited(action="models:approve")
    assert [(e.principal, e.resource, e.decision) for e in denied] == [
        ("ml-engineer", "model:churn", "deny")
    ]
    monitor.acknowledge("churn", "x", "wasserstein", approver)
    monitor.silence("churn", "*", "dataset", START + timedelta(days=1), admin)
    sent = len(sink.events)
    monitor.record("churn", "b1", _batch(400, 400, shift=2.0), credential=SERVICE)
    new = sink.events[sent:]
    # x escalates WARN -> ALERT above the acknowledged level, so it notifies; the
    # silenced dataset key does not.
    assert [(e["feature"], e["level"]) for e in new if e["feature"] in {"x", "*"}] == [
        ("x", "alert")
    ]
    assert {"monitoring:acknowledge", "monitoring:silence"} <= set(auditor.actions())
    assert auditor.principals["monitoring:acknowledge"] == "approver"  # the tokens' principals
    assert auditor.principals["monitoring:silence"] == "admin"
    alerts = {tuple(a["key"]): a for a in monitor.report("churn")["alerts"]}
    assert alerts[("churn", "x", "wasserstein")]["acknowledged_by"] == "approver"


def test_feedback_gives_realised_metrics_per_window(monitor: DriftMonitor) -> None:
    batch = _batch(0, 400)
    monitor.record("churn", "b0", batch, credential=SERVICE)
    labels = {
        rid: int(p > 0.3) for rid, p in zip(batch["request_id"], batch["prediction"], strict=True)
    }
    assert monitor.feedback("churn", {**labels, "unknown": 1}, credential=SERVICE) == 400
    realised = monitor.report("churn")["windows"][0]["realised"]
    assert realised["n_labels"] == 400 and realised["auc"] == pytest.approx(1.0)
    # Labels for the open window are joined when it closes.
    open_batch = _batch(400, 100)
    monitor.record("churn", "b1", open_batch, credential=SERVICE)
    monitor.feedback("churn", {open_batch["request_id"][0]: 1}, credential=SERVICE)
    monitor.record("churn", "b2", _batch(500, 300), credential=SERVICE)
    assert monitor.report("churn")["windows"][1]["realised"]["n_labels"] == 1


def test_drift_in_consecutive_windows_requests_retraining_once(
    settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor
) -> None:
    requests: list[RetrainRequest] = []
    monitor = DriftMonitor(
        settings,
        sink=sink,
        auditor=auditor,
        clock=clock,
        retrain_sink=requests.append,
        callers=callers(),
    )
    _register(monitor, {"count": 400}, retrain_policy={"drift_windows": 2, "min_interval_s": 3600})
    for i in range(4):
        monitor.record("churn", f"b{i}", _batch(i * 400, 400, shift=2.0), credential=SERVICE)
    assert len(requests) == 1  # the windows 2-3 request falls inside the rate limit
    assert requests[0].window_ids == ("churn/v1/w0", "churn/v1/w1")
    assert "monitoring:retrain_request" in auditor.actions()


def test_default_retrain_sink_writes_the_request_to_the_lake(
    settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor
) -> None:
    bus = InProcessBus()
    monitor = _monitor(settings, clock, sink, auditor, events=PlatformEvents(settings, bus=bus))
    _register(monitor, {"count": 400}, retrain_policy={"drift_windows": 1})
    monitor.record("churn", "b0", _batch(0, 400, shift=2.0), credential=SERVICE)
    files = list((Path(settings.lake.root) / "monitoring" / "retrain_requests").glob("*.json"))
    assert len(files) == 1
    written = json.loads(files[0].read_text())
    assert (written["model"], written["window_ids"]) == ("churn", ["churn/v1/w0"])
    # Then it is announced, naming the request the file holds.
    (announced,) = bus.read(PlatformEventKind.RETRAIN_REQUESTED.value, "test", block_s=0)
    assert announced.event.payload == {
        "model": "churn",
        "version": 1,
        "request_id": written["request_id"],
        "reason": written["reason"],
    }


def test_erase_drops_a_subjects_logged_rows_and_sampled_values(
    monitor: DriftMonitor, settings: EntaiSettings, clock: Clock, sink: Sink, auditor: Auditor
) -> None:
    monitor.record("churn", "b0", _batch(0, 200), credential=SERVICE)  # user7 has 4 rows here
    before = monitor.report("churn")["predictions_logged"]
    dropped = monitor.erase(["user7"], credential=SERVICE)
    assert dropped == 4 + 4 * 2  # 4 log rows, 4 sampled values of each numeric column
    assert monitor.report("churn")["predictions_logged"] == before - 4
    assert monitor.erase(["user7"], credential=SERVICE) == 0
    state = (Path(settings.lake.root) / "monitoring" / "churn" / "state.json").read_text()
    assert "user7" not in state
    assert "monitoring:erase" in auditor.actions()


def test_report_is_strict_json(monitor: DriftMonitor) -> None:
    sparse = _batch(0, 400)
    sparse["x"] = [None] * 400  # no values -> insufficient data, reported as null
    monitor.record("churn", "b0", sparse, credential=SERVICE)
    text = json.dumps(monitor.report("churn"), allow_nan=False)
    window = json.loads(text)["windows"][0]
    assert window["features"]["x"]["status"] == "insufficient_data"
    assert window["features"]["x"]["statistic"] is None


def test_metrics_facade_is_a_no_op_without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_instruments", None)
    assert not Metrics.enabled()
    Metrics.predictions("churn", 1, 5)
    Metrics.online_lookups("user_features", 3)
    Metrics.online_latency(0.01)
    Metrics.prediction_latency("churn", 1, 0.02)
    Metrics.drift_statistic("churn", "x", "ks", 0.3)
    Metrics.alert_state("churn", "x", "ks", "warn")
    assert metrics_module._instruments is None
