"""Model monitoring domain: windows, the feedback join, realised metrics, retraining policy.

Windows are tumbling and close by **count** (``count`` rows), by **time** (event time,
aligned buckets of ``seconds``: a row whose timestamp is at or past the open window's
end closes it and opens the next at that row's bucket), or both, whichever comes first.
A time window with no new rows is closed by the clock once ``now >= end + grace_s``
(:func:`window_due`). Late rows (timestamps before the open window's start) join the
open window: closed windows never reopen. A batch is cut into :class:`Segment` s
without looking at rows one by one, so one batch may close several windows.

Window ids are ``<model>/v<version>/w<seq>`` with a sequence that never restarts for a
model, so ids stay unique across versions.

Realised metrics, the label-free estimate and the feedback join live in
:mod:`entai.shared.monitoring._feedback` and are re-exported here. :class:`RetrainPolicy` turns
closed windows into rate-limited :class:`RetrainRequest` s.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring._alerts import AlertTransition
from entai.shared.monitoring._drift import ColumnDrift
from entai.shared.monitoring._feedback import PredictionLog, expected_accuracy, log_loss, roc_auc

__all__ = [
    "PredictionLog",
    "RetrainPolicy",
    "RetrainRequest",
    "Segment",
    "WindowCursor",
    "WindowReport",
    "WindowSpec",
    "batch_frame",
    "column_summary",
    "expected_accuracy",
    "log_loss",
    "plan_segments",
    "roc_auc",
    "timestamps_s",
    "transition_event",
    "window_due",
    "window_id",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WindowSpec:
    """How a model's served rows are cut into windows.

    Attributes:
        count: Close after this many rows (None: no count limit).
        seconds: Close at the end of an aligned event-time bucket of this length.
        grace_s: The clock closes an idle time window this long after its end.
        sample_size: Values sampled per numeric column and window (bounded memory).
    """

    count: int | None = None
    seconds: float | None = None
    grace_s: float = 0.0
    sample_size: int = 2000

    def __post_init__(self) -> None:
        problems = [
            name
            for name, ok in (
                ("count/seconds", self.count is not None or self.seconds is not None),
                ("count", self.count is None or self.count >= 1),
                ("seconds", self.seconds is None or self.seconds > 0),
                ("grace_s", self.grace_s >= 0),
                ("sample_size", self.sample_size >= 1),
            )
            if not ok
        ]
        if problems:
            raise ConfigError(
                f"invalid window spec field(s): {', '.join(problems)} "
                "(need count >= 1 and/or seconds > 0)",
                details={"fields": problems},
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowSpec:
        """Build a spec from :meth:`to_dict` output or user config."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(
                f"window spec is invalid: {exc}", details={"field": "window"}
            ) from exc


@dataclass(frozen=True)
class WindowCursor:
    """The open window: its sequence number, rows so far and event-time end."""

    seq: int = 0
    n: int = 0
    end_s: float | None = None


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of a batch go to window ``seq``; ``closes`` ends it after."""

    start: int
    stop: int
    seq: int
    closes: bool
    closed_by: str = ""


def window_id(model: str, version: int, seq: int) -> str:
    """The id of window ``seq`` of a model version."""
    return f"{model}/v{version}/w{seq}"


def plan_segments(
    spec: WindowSpec, cursor: WindowCursor, ts: FloatArray
) -> tuple[list[Segment], WindowCursor]:
    """Cut a batch (row timestamps in seconds, in arrival order) into window segments.

    Returns:
        The segments in order, and the cursor of the window left open afterwards.
    """
    segments: list[Segment] = []
    i, size = 0, int(ts.size)
    while i < size:
        end = cursor.end_s
        if cursor.n == 0 and spec.seconds is not None:
            end = (math.floor(ts[i] / spec.seconds) + 1) * spec.seconds
        room = size - i if spec.count is None else spec.count - cursor.n
        by_time = size
        if end is not None:
            past = np.flatnonzero(ts[i:] >= end)
            by_time = i + int(past[0]) if past.size else size
        stop = min(i + room, by_time)
        n = cursor.n + stop - i
        closed_by = "count" if spec.count is not None and n >= spec.count else ""
        closed_by = closed_by or ("time" if stop == by_time < size else "")
        segments.append(Segment(i, stop, cursor.seq, bool(closed_by), closed_by))
        cursor = WindowCursor(cursor.seq + 1) if closed_by else WindowCursor(cursor.seq, n, end)
        i = stop
    return segments, cursor


def window_due(spec: WindowSpec, cursor: WindowCursor, now_s: float) -> bool:
    """Whether the clock should close the open (non-empty) time window."""
    return cursor.n > 0 and cursor.end_s is not None and now_s >= cursor.end_s + spec.grace_s


def batch_frame(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """A batch as a DataFrame: a list of row dicts or a dict of equal-length columns.

    Raises:
        InvalidInputError: for anything else, or columns of different lengths.
    """
    try:
        if isinstance(rows, Mapping):
            return pd.DataFrame({str(k): list(v) for k, v in rows.items()})
        return pd.DataFrame.from_records(list(rows))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"rows must be a list of dicts or a dict of equal-length columns: {exc}",
            details={"field": "rows"},
        ) from exc


def timestamps_s(frame: pd.DataFrame, column: str, now_s: float) -> FloatArray:
    """Row timestamps in epoch seconds (numbers, datetimes or ISO strings); missing -> now."""
    if column not in frame.columns:
        return np.full(len(frame), now_s, dtype=np.float64)
    series = frame[column]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        out = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            parsed = pd.to_datetime(series, utc=True, format="mixed")
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"column {column!r} holds values that are not timestamps: {exc}",
                details={"field": column},
            ) from exc
        out = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    return np.where(np.isfinite(out), out, now_s)


# --- window reports -------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def column_summary(drift: ColumnDrift) -> dict[str, Any]:
    """A column's drift result as JSON (NaN statistics of insufficient data -> null)."""
    return {
        "kind": drift.kind,
        "method": str(drift.method),
        "statistic": _finite(drift.statistic),
        "p_value": _finite(drift.p_value),
        "threshold": drift.threshold,
        "status": str(drift.status),
        "psi": _finite(drift.psi),
        "psi_band": drift.psi_band,
        "null_rate": drift.null_rate_cur,
        "new_category_rate": drift.new_category_rate,
        "n": drift.n_cur,
    }


@dataclass(frozen=True)
class WindowReport:
    """What one closed window showed; JSON-able through :meth:`to_dict`.

    Attributes:
        window_id: ``<model>/v<version>/w<seq>``.
        n: Rows in the window.
        status: Dataset drift status (``drift``, ``no_drift``, ``insufficient_data``).
        closed_by: ``count``, ``time`` or ``clock``.
        features: Per-feature :func:`column_summary`.
        prediction: Prediction drift (None when the reference has no prediction column).
        expected_accuracy: Label-free estimate over the window's predictions.
        realised: ``{"n_labels", "auc", "log_loss"}`` once labels arrived.
        alerts: Alert level changes this window caused.
    """

    window_id: str
    model: str
    version: int
    seq: int
    n: int
    start: float | None
    end: float | None
    closed_at: str
    closed_by: str
    status: str
    drifted_share: float
    features: dict[str, dict[str, Any]]
    prediction: dict[str, Any] | None
    expected_accuracy: float | None
    realised: dict[str, Any] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(**data)


def transition_event(transition: AlertTransition, version: int) -> dict[str, Any]:
    """An alert level change as the JSON event sinks and the audit log receive."""
    key = transition.key
    return {
        "model": key.model,
        "version": version,
        "feature": key.feature,
        "method": key.method,
        "window_id": transition.window_id,
        "previous": str(transition.previous),
        "level": str(transition.level),
        "at": transition.at.isoformat(),
        "notify": transition.notify,
        "drifted_windows": transition.drifted_windows,
    }


# --- retraining -----------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainRequest:
    """A request to the retraining workflow, with why it was made."""

    model: str
    version: int
    reason: str
    window_ids: tuple[str, ...]
    created_at: datetime
    request_id: str
    auto_promote: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (time as ISO 8601)."""
        out = asdict(self)
        out["window_ids"] = list(self.window_ids)
        out["created_at"] = self.created_at.isoformat()
        return out


@dataclass(frozen=True)
class RetrainPolicy:
    """When a model should be retrained; requests are rate-limited per model.

    Attributes:
        drift_windows: Dataset drift in this many consecutive closed windows.
        auc_margin: Realised AUC below the reference AUC by more than this.
        min_interval_s: At most one request per model in this many seconds.
        auto_promote: Passed on: may the workflow promote a passing challenger itself.
    """

    drift_windows: int = 2
    auc_margin: float = 0.05
    min_interval_s: float = 3600.0
    auto_promote: bool = False

    def __post_init__(self) -> None:
        if self.drift_windows < 1 or self.auc_margin < 0 or self.min_interval_s < 0:
            raise ConfigError(
                "retrain policy needs drift_windows >= 1, auc_margin >= 0, min_interval_s >= 0",
                details={"fields": ["drift_windows", "auc_margin", "min_interval_s"]},
            )

    def evaluate(
        self,
        model: str,
        version: int,
        windows: Sequence[WindowReport],
        *,
        reference_auc: float | None,
        last_request_at: datetime | None,
        now: datetime,
    ) -> RetrainRequest | None:
        """A request when a rule fires and the rate limit allows it, else None.

        Args:
            windows: Closed windows of this version, oldest first.
            reference_auc: The model's AUC on its validation set (None: no AUC rule).
            last_request_at: When the model's previous request was made.
            now: The current time (timezone-aware).
        """
        if last_request_at is not None and now - last_request_at < timedelta(
            seconds=self.min_interval_s
        ):
            return None
        reason = ""
        ids: tuple[str, ...] = ()
        recent = windows[-self.drift_windows :]
        if len(recent) == self.drift_windows and all(w.status == "drift" for w in recent):
            reason = f"dataset drift in {self.drift_windows} consecutive windows"
            ids = tuple(w.window_id for w in recent)
        labelled = [w for w in windows if w.realised and w.realised.get("auc") is not None]
        if not reason and reference_auc is not None and labelled:
            auc = float(labelled[-1].realised["auc"])  # type: ignore[index]
            if auc < reference_auc - self.auc_margin:
                reason = (
                    f"realised AUC {auc:.3f} below the reference {reference_auc:.3f} "
                    f"by more than {self.auc_margin}"
                )
                ids = (labelled[-1].window_id,)
        if not reason:
            return None
        digest = hashlib.sha256("|".join([model, str(version), reason, *ids]).encode())
        return RetrainRequest(
            model, version, reason, ids, now, digest.hexdigest()[:24], self.auto_promote
        )
