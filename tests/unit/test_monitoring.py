"""Monitoring domain: window cutting, timestamps, feedback join, metrics, retrain policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring import (
    NumericColumnProfile,
    PredictionLog,
    RetrainPolicy,
    WindowAccumulator,
    WindowCursor,
    WindowReport,
    WindowSpec,
    batch_frame,
    decode_floats,
    encode_floats,
    expected_accuracy,
    log_loss,
    plan_segments,
    roc_auc,
    timestamps_s,
    window_due,
    window_id,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _cut(spec: WindowSpec, cursor: WindowCursor, ts: list[float]) -> tuple[list, WindowCursor]:
    segments, after = plan_segments(spec, cursor, np.asarray(ts, dtype=np.float64))
    return [(s.start, s.stop, s.seq, s.closed_by) for s in segments], after


# --- windows ---------------------------------------------------------------------------


def test_window_spec_needs_count_or_seconds_and_sane_values() -> None:
    with pytest.raises(ConfigError):
        WindowSpec()
    with pytest.raises(ConfigError):
        WindowSpec(count=0)
    with pytest.raises(ConfigError):
        WindowSpec.from_dict({"count": 10, "bogus": 1})
    spec = WindowSpec(count=10, seconds=60.0)
    assert WindowSpec.from_dict(spec.to_dict()) == spec


def test_count_windows_cut_one_batch_into_several_windows() -> None:
    segments, after = _cut(WindowSpec(count=4), WindowCursor(seq=7, n=2), [0.0] * 11)
    assert segments == [
        (0, 2, 7, "count"),
        (2, 6, 8, "count"),
        (6, 10, 9, "count"),
        (10, 11, 10, ""),
    ]
    assert (after.seq, after.n) == (10, 1)


def test_count_window_stays_open_below_count() -> None:
    segments, after = _cut(WindowSpec(count=100), WindowCursor(), [0.0] * 30)
    assert segments == [(0, 30, 0, "")]
    segments, after = _cut(WindowSpec(count=100), after, [0.0] * 70)
    assert segments == [(0, 70, 0, "count")]
    assert after == WindowCursor(seq=1)


def test_time_windows_are_aligned_buckets_closed_by_the_first_row_past_the_end() -> None:
    spec = WindowSpec(seconds=10.0)
    segments, after = _cut(spec, WindowCursor(), [12.0, 15.0, 19.9, 20.0, 25.0, 41.0])
    # [10, 20) holds three rows; 20.0 opens [20, 30); 41.0 closes it and opens [40, 50).
    assert segments == [(0, 3, 0, "time"), (3, 5, 1, "time"), (5, 6, 2, "")]
    assert after == WindowCursor(seq=2, n=1, end_s=50.0)


def test_late_rows_join_the_open_time_window() -> None:
    spec = WindowSpec(seconds=10.0)
    _, cursor = _cut(spec, WindowCursor(), [25.0])
    segments, after = _cut(spec, cursor, [3.0, 26.0])
    assert segments == [(0, 2, 0, "")]
    assert after.n == 3


def test_count_and_time_close_at_whichever_comes_first() -> None:
    spec = WindowSpec(count=3, seconds=10.0)
    segments, _ = _cut(spec, WindowCursor(), [1.0, 2.0, 3.0, 4.0, 11.0])
    assert segments == [(0, 3, 0, "count"), (3, 4, 1, "time"), (4, 5, 2, "")]


def test_clock_closes_an_idle_time_window_after_grace() -> None:
    spec = WindowSpec(seconds=10.0, grace_s=5.0)
    _, cursor = _cut(spec, WindowCursor(), [12.0])
    assert not window_due(spec, cursor, 24.9)
    assert window_due(spec, cursor, 25.0)
    assert not window_due(spec, WindowCursor(), 1e9)  # an empty window never closes
    assert not window_due(WindowSpec(count=5), WindowCursor(n=3), 1e9)


def test_window_ids_name_model_version_and_sequence() -> None:
    assert window_id("churn", 3, 12) == "churn/v3/w12"


def test_timestamps_accept_numbers_iso_strings_datetimes_and_default_to_now() -> None:
    frame = pd.DataFrame({"ts": ["2026-01-01T00:00:10Z", None]})
    expected = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC).timestamp()
    assert timestamps_s(frame, "ts", 99.0).tolist() == [expected, 99.0]
    numbers = pd.DataFrame({"ts": [5.0, np.nan]})
    assert timestamps_s(numbers, "ts", 99.0).tolist() == [5.0, 99.0]
    assert timestamps_s(pd.DataFrame({"x": [1, 2]}), "ts", 7.0).tolist() == [7.0, 7.0]
    with pytest.raises(InvalidInputError):
        timestamps_s(pd.DataFrame({"ts": ["not a time"]}), "ts", 0.0)


def test_batch_frame_takes_rows_or_columns() -> None:
    rows = batch_frame([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    columns = batch_frame({"a": [1, 2], "b": ["x", "y"]})
    pd.testing.assert_frame_equal(rows, columns)
    with pytest.raises(InvalidInputError):
        batch_frame({"a": [1, 2], "b": ["x"]})


# --- metrics ---------------------------------------------------------------------------


def test_auc_and_log_loss_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1).round(2)  # ties included
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert roc_auc([1, 1], [0.2, 0.9]) is None


def test_expected_accuracy_is_mean_max_p_one_minus_p() -> None:
    assert expected_accuracy([0.9, 0.2, 0.5, np.nan]) == pytest.approx((0.9 + 0.8 + 0.5) / 3)
    assert expected_accuracy([]) is None
    # For a calibrated classifier it estimates the realised accuracy.
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = rng.uniform(0, 1, p.size) < p
    assert expected_accuracy(p) == pytest.approx(np.mean((p >= 0.5) == y), abs=0.005)


# --- feedback join ---------------------------------------------------------------------


def test_prediction_log_joins_labels_by_request_id_and_relabels() -> None:
    log = PredictionLog()
    log.add(["a", "b", "c"], np.array([0.9, 0.2, 0.6]), "m/v1/w0", ["u1", "u2", None])
    log.add(["d"], np.array([0.3]), "m/v1/w1", ["u1"])
    assert log.join({"a": 1, "d": 0, "zzz": 1}) == (2, {"m/v1/w0", "m/v1/w1"})
    assert log.join({"a": 0}) == (1, {"m/v1/w0"})  # a corrected label replaces the old one
    labels, predictions = log.labelled("m/v1/w0")
    assert labels.tolist() == [0.0] and predictions.tolist() == [0.9]
    with pytest.raises(InvalidInputError):
        log.join({"b": 2})


def test_prediction_log_is_bounded_and_survives_a_json_round_trip() -> None:
    log = PredictionLog(max_rows=3)
    log.add([f"r{i}" for i in range(5)], np.linspace(0, 1, 5), "w0", [None] * 5)
    assert len(log) == 3
    assert log.join({"r0": 1, "r4": 1}) == (1, {"w0"})  # r0 was evicted
    restored = PredictionLog.from_dict(json.loads(json.dumps(log.to_dict())))
    assert restored.to_dict() == log.to_dict()
    assert restored.labelled("w0")[0].tolist() == [1.0]


def test_prediction_log_erases_by_request_id_or_entity_key() -> None:
    log = PredictionLog()
    log.add(["a", "b", "c"], np.array([0.1, 0.2, 0.3]), "w0", ["u1", "u2", "u1"])
    dropped, found = log.erase(["u1"])
    assert dropped == 2 and found == {"a", "c", "u1"}
    assert log.erase(["b"]) == (1, {"b", "u2"})
    assert len(log) == 0


# --- retraining policy -----------------------------------------------------------------


def _window(seq: int, status: str, auc: float | None = None) -> WindowReport:
    realised = None if auc is None else {"n_labels": 100, "auc": auc, "log_loss": 0.5}
    return WindowReport(
        window_id=f"m/v1/w{seq}",
        model="m",
        version=1,
        seq=seq,
        n=100,
        start=None,
        end=None,
        closed_at=NOW.isoformat(),
        closed_by="count",
        status=status,
        drifted_share=1.0 if status == "drift" else 0.0,
        features={},
        prediction=None,
        expected_accuracy=None,
        realised=realised,
    )


def test_retrain_after_drift_in_consecutive_windows_only() -> None:
    policy = RetrainPolicy(drift_windows=2)
    split = [_window(0, "drift"), _window(1, "no_drift"), _window(2, "drift")]
    assert policy.evaluate("m", 1, split, reference_auc=None, last_request_at=None, now=NOW) is None
    request = policy.evaluate(
        "m", 1, [*split, _window(3, "drift")], reference_auc=None, last_request_at=None, now=NOW
    )
    assert request is not None
    assert request.window_ids == ("m/v1/w2", "m/v1/w3")
    assert "2 consecutive windows" in request.reason
    assert json.loads(json.dumps(request.to_dict()))["created_at"] == NOW.isoformat()


def test_retrain_when_realised_auc_falls_below_reference_by_the_margin() -> None:
    policy = RetrainPolicy(auc_margin=0.05)
    ok = [_window(0, "no_drift", auc=0.76)]
    assert policy.evaluate("m", 1, ok, reference_auc=0.8, last_request_at=None, now=NOW) is None
    bad = [*ok, _window(1, "no_drift", auc=0.74)]
    request = policy.evaluate("m", 1, bad, reference_auc=0.8, last_request_at=None, now=NOW)
    assert request is not None and request.window_ids == ("m/v1/w1",)
    assert "AUC 0.740" in request.reason


def test_retrain_requests_are_rate_limited_and_ids_are_stable() -> None:
    policy = RetrainPolicy(drift_windows=1, min_interval_s=3600)
    windows = [_window(0, "drift")]
    recent = NOW - timedelta(minutes=30)
    assert (
        policy.evaluate("m", 1, windows, reference_auc=None, last_request_at=recent, now=NOW)
        is None
    )
    old = NOW - timedelta(hours=2)
    first = policy.evaluate("m", 1, windows, reference_auc=None, last_request_at=old, now=NOW)
    again = policy.evaluate("m", 1, windows, reference_auc=None, last_request_at=old, now=NOW)
    assert first is not None and again is not None
    assert first.request_id == again.request_id
    with pytest.raises(ConfigError):
        RetrainPolicy(drift_windows=0)


# --- tagged samples (erasure) and exact checkpoints ------------------------------------


def test_accumulator_erases_a_subjects_sampled_values_only() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 1000), "c": rng.choice(["a", "b"], 1000)})
    tags = [f"user{i % 10}" for i in range(1000)]
    acc = WindowAccumulator(sample_size=200, seed=1).add(frame, tags=tags)
    before = acc.to_profile().columns["x"]
    assert isinstance(before, NumericColumnProfile)
    dropped = acc.erase(["user3"])
    after = acc.to_profile().columns["x"]
    assert isinstance(after, NumericColumnProfile)
    assert dropped == before.values.size - after.values.size > 0
    assert (after.n_values, after.mean) == (before.n_values, before.mean)  # aggregates stay
    state = json.dumps(acc.to_dict())
    assert "user3" not in state and "user4" in state
    with pytest.raises(InvalidInputError):
        acc.add(frame, tags=tags[:5])


def test_accumulator_checkpoint_is_exact_and_continues_sampling_identically() -> None:
    rng = np.random.default_rng(6)
    first, second = (pd.DataFrame({"x": rng.normal(0, 1, 500)}) for _ in range(2))
    straight = WindowAccumulator(sample_size=50, seed=2).add(first)
    restored = WindowAccumulator.from_dict(json.loads(json.dumps(straight.to_dict())))
    straight.add(second)
    restored.add(second)
    assert restored.to_dict() == straight.to_dict()
    values = np.array([0.1, -1e-300, np.pi])
    assert decode_floats(encode_floats(values)).tolist() == values.tolist()
    assert decode_floats([1.5, 2.0]).tolist() == [1.5, 2.0]  # plain lists still read
