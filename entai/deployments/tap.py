"""The asynchronous prediction tap: served rows -> prediction log + DriftMonitor.

The request path only appends a small record to a bounded in-memory buffer
(:meth:`PredictionTap.submit`, O(1), never blocks); a daemon thread drains it every
``flush_interval_s`` into one Parquet file per flush under
``<lake>/predictions/model=<name>/date=<YYYY-MM-DD>/`` and one ``record`` call per
model on the DriftMonitor actor. When the buffer is full, new records are dropped and
counted rather than slowing requests down. Shadow predictions are logged with
``alias="shadow"`` and never sent to the monitor (it watches what was served).

With tracing on, a flush is the span ``entai.tap.flush`` in the trace of the first
request it holds, linked to the others' traces; the monitor's ``record`` call carries
it on (``entai.monitor.record`` in the DriftMonitor's process).
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, groupby
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from entai.actors.core import TraceCarrier, span, trace_carrier
from entai.actors.monitoring import DriftMonitor
from entai.actors.services import Services
from entai.shared.data import Lake

__all__ = ["DriftMonitorSender", "MonitorSend", "PredictionTap", "ServedBatch"]

log = logging.getLogger(__name__)

MonitorSend = Callable[[str, str, dict[str, list[Any]]], None]
"""``send(model, batch_id, columns)``: hand rows to the DriftMonitor (non-blocking)."""


@dataclass(frozen=True)
class ServedBatch:
    """The rows of one request scored by one alias.

    Attributes:
        request_id: The HTTP request's id (feedback joins on it).
        model: Registered model name.
        aliases: Alias that scored each row: ``champion``, ``challenger`` or ``shadow``.
        versions: Version that scored each row.
        entity_keys: Canonical entity key of each row.
        feature_names: Column names of ``features``.
        features: Rows x features matrix as served.
        predictions: One score per row.
        ts: Epoch seconds when the request was served.
        trace: The request's trace context (None when not tracing).
    """

    request_id: str
    model: str
    aliases: Sequence[str]
    versions: Sequence[int]
    entity_keys: Sequence[str]
    feature_names: tuple[str, ...]
    features: np.ndarray
    predictions: Sequence[float]
    ts: float = field(default_factory=time.time)
    trace: TraceCarrier | None = None


class PredictionTap:
    """Buffers served batches and ships them off the request path.

    Args:
        lake: Where the prediction log lives.
        monitor: Sends rows to the DriftMonitor; None logs to the lake only.
        prediction_column: Name of the score column the monitor profiles.
        max_buffered: Batches held before new ones are dropped.
        flush_interval_s: How often the thread drains the buffer.
    """

    def __init__(
        self,
        lake: Lake,
        monitor: MonitorSend | None,
        *,
        prediction_column: str = "prediction",
        max_buffered: int = 10_000,
        flush_interval_s: float = 1.0,
    ) -> None:
        self._lake = lake
        self._monitor = monitor
        self._prediction_column = prediction_column
        self._buffer: deque[ServedBatch] = deque()
        self._max = max_buffered
        self._interval = flush_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.flushed_rows = 0

    def submit(self, batch: ServedBatch) -> None:
        """Queue a served batch; drops it (counted) when the buffer is full."""
        if len(self._buffer) >= self._max:
            self.dropped += 1
            return
        self._buffer.append(batch)

    def start(self) -> None:
        """Start the flushing thread."""
        self._thread = threading.Thread(target=self._run, name="prediction-tap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Flush what is buffered and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self.flush()

    @property
    def running(self) -> bool:
        """Whether the flushing thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the tap must never take serving down
                log.error("prediction tap flush failed", extra={"error": repr(exc)})

    def flush(self) -> int:
        """Write everything buffered now; returns the rows written."""
        with self._lock:
            batches: list[ServedBatch] = []
            while self._buffer:
                batches.append(self._buffer.popleft())
            if not batches:
                return 0
            by_model: dict[str, list[ServedBatch]] = {}
            for b in batches:
                by_model.setdefault(b.model, []).append(b)
            rows = 0
            for model, group in by_model.items():
                traces = [b.trace for b in group if b.trace is not None]
                attributes = {"entai.model": model, "entai.requests": len(group)}
                with span(
                    "entai.tap.flush",
                    attributes,
                    parent=traces[0] if traces else None,
                    links=traces[1:],
                ):
                    table = _table(group, self._prediction_column)
                    self._write(model, table)
                    served = table.filter(pc.not_equal(table["alias"], "shadow"))
                    if served.num_rows and self._monitor is not None:
                        self._monitor(model, uuid.uuid4().hex, served.to_pydict())
                rows += table.num_rows
            self.flushed_rows += rows
            return rows

    def _write(self, model: str, table: pa.Table) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        name = f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink)
        path = self._lake.path("predictions", f"model={model}", f"date={day}", name)
        self._lake.write_bytes(path, sink.getvalue())


def _table(batches: Sequence[ServedBatch], prediction_column: str) -> pa.Table:
    """One Arrow table for batches: ids, alias, version, features, prediction.

    A feature a batch does not have is NaN in its rows. The feature matrices of a run
    of batches with the same columns are copied in with one assignment (a flush holds
    thousands of one-row batches; one copy per batch and feature cost about 10 µs of
    the serving thread's time per request).
    """
    lengths = [len(b.predictions) for b in batches]
    position: dict[str, int] = {}
    for b in batches:
        for n in b.feature_names:
            position.setdefault(n, len(position))
    values = np.full((len(position), sum(lengths)), np.nan, dtype=np.float64)
    start = 0
    for layout, run in groupby(batches, key=lambda b: b.feature_names):
        group = list(run)
        matrices = [b.features for b in group]
        block = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
        if len(block) != sum(len(b.predictions) for b in group):
            raise ValueError("a served batch has not one feature row per prediction")
        values[[position[n] for n in layout], start : start + len(block)] = block.T
        start += len(block)
    columns: dict[str, Any] = {
        "request_id": np.repeat([b.request_id for b in batches], lengths),
        "ts": np.repeat([b.ts for b in batches], lengths),
        "model": np.repeat([b.model for b in batches], lengths),
        "alias": pa.array(chain.from_iterable(b.aliases for b in batches), pa.string()),
        "version": np.fromiter(chain.from_iterable(b.versions for b in batches), np.int64),
        "entity_key": pa.array(chain.from_iterable(b.entity_keys for b in batches), pa.string()),
    }
    for n, i in position.items():
        columns[n] = values[i]
    columns[prediction_column] = np.fromiter(
        chain.from_iterable(b.predictions for b in batches), np.float64
    )
    return pa.table(columns)


class DriftMonitorSender:
    """:data:`MonitorSend` over the ``entai-drift-monitor`` actor.

    Calls are fire-and-forget; their outcomes are checked on the next send and
    failures logged. Without a running monitor (looked up again on every send) the
    rows go to the lake only. At most ``max_pending`` calls are in flight; beyond
    that batches are dropped and counted instead of queueing without bound. Each call
    presents ``credential`` (the replica's service credential).
    """

    def __init__(self, services: Services, credential: str, *, max_pending: int = 64) -> None:
        self._services = services
        self._credential = credential
        self._max_pending = max_pending
        self._pending: list[Any] = []
        self.dropped = 0

    def __call__(self, model: str, batch_id: str, columns: dict[str, list[Any]]) -> None:
        """Send one micro-batch of served rows to the monitor."""
        if self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a monitor failure must not stop the tap
                    log.warning("drift monitor rejected a batch", extra={"error": repr(exc)})
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            return
        monitor = self._services.drift_monitor_if_running()
        if monitor is None:
            log.debug("no drift monitor running; rows logged to the lake only")
            return
        trace = trace_carrier()
        self._pending.append(
            monitor.submit(
                DriftMonitor.record,
                model,
                batch_id,
                columns,
                credential=self._credential,
                trace=trace,
            )
        )
