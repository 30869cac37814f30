"""The streaming path: events in through the bus, out to the lake and the feature views.

Publish side: :func:`publish_events` validates and masks a batch of events (the
contract's rules, as for files) and publishes the accepted ones; the ``POST /v1/events``
endpoint answers its :class:`EventsReceipt` with 202.

Consume side: a :class:`StreamConsumer` reads micro-batches from the bus and, per batch:

1. drops events whose id the bus ledger marks ``DONE`` (repeats) or that a consumer
   that died already wrote to the lake (the ledger names its file, the file exists);
2. records, per event, the lake file it goes to (write-ahead), then writes the rest to
   ``raw/<source>/date=<event date>/part-stream-<hash of the event ids>.parquet``
   (atomically; a re-run of the same events rewrites the same file);
3. feeds every feature view reading that source: ``view.compute`` -> offline table ->
   online store, with one ``created_timestamp``, so the offline table holds what the
   online store served;
4. acknowledges, which marks the ids ``DONE``. A crash anywhere before that re-delivers
   the batch; steps 1-2 make the lake see every event exactly once.

Erased subjects: with ``erased`` (the erased-subject list), an event of a subject
erased at or after the platform received it (it was on the bus during the erasure)
neither lands nor feeds a view; it is acknowledged and counted as ``erased``.

Future-dated events: with ``max_future_skew``, an event dated more than that after the
consumer's clock neither lands nor feeds a view (last-write-wins would let it pin the
online value until real time caught up). It is handed to ``quarantine`` with the
reason and leaves the bus without being marked ``DONE``, so a replay (once the
producer's clock is fixed, or once its time has come) lands it; without a
``quarantine`` it stays on the bus and is delivered again.

Late events (older than values already online) land like any other; a view with
history recomputes its keys from the raw history (below), so the newest row of a key
is computed again with the late event in it and replaces the stored one under
last-write-wins (same event time, newer created time).

Windowed features: a transform only sees the frame it is given. For a view with
history (by default: a view with a transform and a ttl; the transform's windows must
fit in that lookback, as the demo's 7- and 30-day counts fit in their 30-day ttl),
the consumer computes the view once per micro-batch, on the raw events since the day
of ``earliest event - lookback`` (the batch is already in the lake) of the entities
the batch touches, and keeps the rows at or after the batch's earliest event: the
values a full batch recompute gives for them. The entities are the values in the
batch of the view's first join key that is a raw column (a user's features are
computed from that user's events: ``user_id`` for the demo's user views, also those
keyed by user and category, ``product_id`` for product popularity); a view with no
such key gets the whole lookback. This assumes causal transforms (a row depends only
on events at or before it) whose rows for one value of that key depend only on the
events with that value.

That history comes from the consumer's :class:`RawMirror` (``mirror_rows``), an
in-memory copy of the lake's recent raw zone caught up with the lake before each
micro-batch (the files it has not read yet, whoever wrote them; rewritten or removed
files too, so an erasure reaches it), so a micro-batch's cost follows the entities it
touches, not the history. A batch reaching back before the mirror's floor (a late
event older than the longest lookback plus a day, or a mirror past its row bound)
reads the lake's raw zone for those entities instead, with the same result.
A view's offline file from a micro-batch is named by the batch's event ids: a batch
redelivered as it was rewrites its own files; a later batch that computes the same
(key, event time) rows again (a daily view, a user active twice in one day) writes a
file of its own, so the offline table keeps every value the online store served. A
batch redelivered with other events around it can append the same feature rows again
(same values and event time, newer created time).

Micro-batch size: ``batch_size`` events while the consumer keeps up; while reads come
back full (a backlog), each asks for twice as many, up to ``max_batch_size``, so the
fixed cost of a batch (the lake file, each view's offline file and online write) is
shared by more events.

:func:`push` writes already-computed feature rows to a view: offline, then online.

Tracing: published events carry the publishing request's trace context
(``Event.trace``, taken inside the span ``entai.bus.publish``); a micro-batch is the
span ``entai.stream.process`` in the trace of its first event, linked to the others',
with ``entai.stream.land`` (the lake write) and one ``entai.stream.feature_update``
per view (its online write reaches the shards in the same trace) under it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from entai.actors.bus import DONE, Delivery, EventBus
from entai.actors.core import span, trace_carrier
from entai.actors.features import OnlineFeatureClient
from entai.pipelines.features._raw_mirror import RawMirror
from entai.shared.core import InvalidInputError
from entai.shared.data import (
    DataContract,
    Event,
    EventsReceipt,
    Lake,
    UndeclaredPii,
    accepted_schema,
    event_table,
    validate_events,
)
from entai.shared.features import (
    EVENT_TIMESTAMP,
    FeatureView,
    OfflineStore,
    compute_view,
    conform,
    latest_per_key,
    online_batch,
    stamp_created,
)
from entai.shared.governance import ErasedSubjects

__all__ = [
    "BatchReport",
    "Quarantine",
    "StreamConsumer",
    "StreamReport",
    "publish_events",
    "push",
]

logger = logging.getLogger(__name__)

_DATE = "date"
_PARTITIONING = pads.partitioning(pa.schema([(_DATE, pa.string())]), flavor="hive")
_LATE = timedelta(days=1)
"""How much older than the longest lookback the raw mirror keeps (late events)."""


def publish_events(
    bus: EventBus,
    contract: DataContract,
    events: Sequence[Any],
    *,
    hmac_key: bytes,
    received_at: datetime | None = None,
    undeclared_pii: UndeclaredPii = UndeclaredPii.QUARANTINE,
) -> EventsReceipt:
    """Validate a batch of events and publish the accepted ones, masked.

    Args:
        bus: The event bus.
        contract: The source's contract.
        events: Envelopes or bare payloads (see :mod:`entai.shared.data._events`).
        hmac_key: Pseudonymisation key.
        received_at: Receive time (default: now).
        undeclared_pii: What PII found in a payload column stored in the clear does
            (``security.undeclared_pii``): reject the event or redact the finding.

    Returns:
        Accepted and rejected counts, the per-event errors and the PII findings per
        column and kind with their warnings (the 202 body).

    Raises:
        InvalidInputError: the batch is empty or too large.
        ServiceUnavailableError: the bus cannot be reached (nothing was accepted).
    """
    checked = validate_events(
        events, contract, hmac_key, received_at=received_at, undeclared_pii=undeclared_pii
    )
    if checked.accepted:
        attributes = {"entai.source": contract.source, "entai.events": len(checked.accepted)}
        with span("entai.bus.publish", attributes):
            trace = trace_carrier()
            accepted = checked.accepted
            if trace is not None:
                accepted = [e.model_copy(update={"trace": trace}) for e in accepted]
            bus.publish(accepted)
    return checked.receipt()


def push(
    view: FeatureView,
    df: pd.DataFrame,
    *,
    lake: Lake,
    online: OnlineFeatureClient | None,
    created_at: datetime | None = None,
    file_id: str | None = None,
) -> int:
    """Write already-computed feature rows to a view: offline table, then online store.

    Every row gets the same ``created_timestamp`` (``created_at``, default now) unless
    the frame has one, so the offline table holds exactly what the online store serves.

    Returns:
        How many rows were written offline.

    Raises:
        ContractViolationError: the frame does not fit the view.
    """
    return _store(
        view, conform(view, df), lake=lake, online=online, created_at=created_at, file_id=file_id
    )


def _store(
    view: FeatureView,
    rows: pd.DataFrame,
    *,
    lake: Lake,
    online: OnlineFeatureClient | None,
    created_at: datetime | None = None,
    file_id: str | None = None,
) -> int:
    """Shaped rows (``conform``/``compute_view``) to the offline table, then online."""
    rows = stamp_created(rows, created_at)
    written = OfflineStore(lake).append(view, rows, file_id=file_id)
    if online is not None and written:
        online.write_batch(online_batch(view, latest_per_key(rows, view.join_keys)))
    return written


@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch did.

    Attributes:
        events: Deliveries in the batch.
        written: Events written to the lake by this batch.
        duplicates: Events skipped as already stored (ledger DONE, repeated in the
            batch, or in a file a dead consumer wrote).
        files: Lake paths written (relative to the lake root).
        feature_rows: Per view, the feature rows written offline.
        quarantined: Future-dated events held back, each with the reason.
        erased: Events dropped because their subject was erased after they were
            received (acknowledged, never landed).
    """

    events: int
    written: int
    duplicates: int
    files: tuple[str, ...]
    feature_rows: Mapping[str, int] = field(default_factory=dict)
    quarantined: tuple[tuple[Event, str], ...] = ()
    erased: int = 0


@dataclass(frozen=True)
class StreamReport:
    """Totals over :meth:`StreamConsumer.run`."""

    batches: int
    events: int
    written: int
    duplicates: int
    files: tuple[str, ...]
    quarantined: int = 0
    erased: int = 0


Quarantine = Callable[[Sequence[tuple[Event, str]]], None]
"""Keeps future-dated events (each with its reason) before they leave the bus."""


class StreamConsumer:
    """Consumes one source's events from the bus into the lake and its feature views.

    Args:
        bus: The event bus.
        contract: The source's contract (the bus carries validated, masked events).
        lake: The lake.
        consumer: This consumer's name in the group (unique per process).
        views: Feature views; those whose ``source`` is the contract's are fed.
        online: Online store client (None: offline only).
        batch_size: Events per micro-batch while the consumer keeps up.
        block_s: How long one read waits for events.
        history: Per view name, the raw history its transform needs (None: the
            micro-batch alone); views not named use their ttl when they have a transform.
        max_future_skew: Events dated more than this after now are held back (None:
            no check).
        quarantine: Where held-back events go; without it they stay on the bus.
        erased: The erased-subject list (None: no check).
        max_batch_size: Most events per micro-batch while reads come back full
            (default: ``batch_size``, no growth).
        mirror_rows: Most raw events kept in memory for the views' history
            (0: each micro-batch reads its history from the lake).
        mirror_full_listing_s: Most seconds between two listings of every day of the
            mirror's history; the micro-batches in between list their own event days
            and the newest ones (:class:`RawMirror`; 0: every micro-batch lists all).
    """

    def __init__(
        self,
        bus: EventBus,
        contract: DataContract,
        *,
        lake: Lake,
        consumer: str,
        views: Sequence[FeatureView] = (),
        online: OnlineFeatureClient | None = None,
        batch_size: int = 500,
        block_s: float = 1.0,
        history: Mapping[str, timedelta | None] | None = None,
        max_future_skew: timedelta | None = None,
        quarantine: Quarantine | None = None,
        erased: ErasedSubjects | None = None,
        max_batch_size: int | None = None,
        mirror_rows: int = 2_000_000,
        mirror_full_listing_s: float = 0.0,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1", details={"field": "batch_size"})
        if mirror_rows < 0:
            raise InvalidInputError("mirror_rows must be >= 0", details={"field": "mirror_rows"})
        self.bus = bus
        self.contract = contract
        self.source = contract.source
        self.lake = lake
        self.consumer = consumer
        self.views = [v for v in views if v.source == contract.source]
        self.online = online
        self.batch_size = batch_size
        self.block_s = block_s
        self._history = dict(history or {})
        self.max_future_skew = max_future_skew
        self.quarantine = quarantine
        self.erased = erased
        self.max_batch_size = max(batch_size, max_batch_size or batch_size)
        self._want = batch_size
        lookbacks = [lb for lb in map(self._lookback, self.views) if lb is not None]
        self._longest = max(lookbacks) if lookbacks else None
        self._mirror = (
            RawMirror(
                lake,
                contract,
                max_rows=mirror_rows,
                retention=self._longest + _LATE,
                full_listing_s=mirror_full_listing_s,
            )
            if self._longest is not None and mirror_rows
            else None
        )
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return (
            f"StreamConsumer(source={self.source!r}, consumer={self.consumer!r}, "
            f"views={[v.name for v in self.views]})"
        )

    def read(self) -> list[Delivery]:
        """Read the next micro-batch from the bus (empty: none came within ``block_s``).

        A read that comes back full means a backlog: the next asks for twice as many
        events, up to ``max_batch_size``, so the fixed cost of a batch (lake file,
        offline append, online writes) is shared by more events; a read that is not
        full goes back to ``batch_size``.
        """
        deliveries = self.bus.read(
            self.source, self.consumer, max_events=self._want, block_s=self.block_s
        )
        full = len(deliveries) >= self._want
        self._want = min(2 * self._want, self.max_batch_size) if full else self.batch_size
        return deliveries

    def step(self) -> BatchReport | None:
        """Read one micro-batch, process it and acknowledge it; None when none came."""
        deliveries = self.read()
        if not deliveries:
            return None
        report = self.process(deliveries)
        self.settle(deliveries, report)
        return report

    def settle(self, deliveries: Sequence[Delivery], report: BatchReport) -> None:
        """Acknowledge a processed batch: its quarantined events go to ``quarantine``
        and leave the bus without being marked ``DONE`` (or, with no quarantine, stay
        on it); every other delivery is acknowledged."""
        held = {event.event_id for event, _ in report.quarantined}
        done = [d for d in deliveries if d.event.event_id not in held]
        if done:
            self.bus.ack(self.source, done)
        if held and self.quarantine is not None:
            self.quarantine(report.quarantined)
            self.bus.reject(self.source, [d for d in deliveries if d.event.event_id in held])

    def run(self, *, max_batches: int | None = None, until_empty: bool = False) -> StreamReport:
        """Process micro-batches until ``max_batches``, the first empty read
        (``until_empty``) or :meth:`stop`.
        """
        self._stop.clear()
        reports: list[BatchReport] = []
        while not self._stop.is_set() and (max_batches is None or len(reports) < max_batches):
            report = self.step()
            if report is not None:
                reports.append(report)
            elif until_empty:
                break
        return StreamReport(
            batches=len(reports),
            events=sum(r.events for r in reports),
            written=sum(r.written for r in reports),
            duplicates=sum(r.duplicates for r in reports),
            files=tuple(f for r in reports for f in r.files),
            quarantined=sum(len(r.quarantined) for r in reports),
            erased=sum(r.erased for r in reports),
        )

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress."""
        self._stop.set()

    def process(self, deliveries: Sequence[Delivery]) -> BatchReport:
        """Everything before the acknowledgement: lake write, then the feature views."""
        traces = [d.event.trace for d in deliveries if d.event.trace is not None]
        attributes = {"entai.source": self.source, "entai.events": len(deliveries)}
        parent = traces[0] if traces else None
        with span("entai.stream.process", attributes, parent=parent, links=traces[1:]):
            return self._process(deliveries)

    def _process(self, deliveries: Sequence[Delivery]) -> BatchReport:
        unique: dict[str, Event] = {}
        for delivery in deliveries:
            unique.setdefault(delivery.event.event_id, delivery.event)
        ledger = self.bus.ledger(self.source, list(unique))
        claimed = {p for p in ledger.values() if p != DONE}
        in_lake = {p for p in claimed if self.lake.exists(self.lake.path(p))}
        stored = {i for i, p in ledger.items() if p in in_lake}
        pending = [e for e in unique.values() if ledger.get(e.event_id) != DONE]
        pending, quarantined = self._screen(pending)
        pending, erased = self._drop_erased(pending)
        new = [e for e in pending if e.event_id not in stored]
        with span("entai.stream.land", {"entai.events": len(new)}):
            written = self._write_raw(new)
        rows: dict[str, int] = {}
        if pending and self.views:
            batch = event_table(pending, self.contract).to_pandas()
            times = batch[self.contract.event_time]
            since = pd.Timestamp(times.min())
            days = set(times.dt.tz_convert(UTC).dt.strftime("%Y-%m-%d"))
            history = _History(self._sync_mirror(since, days))
            file_id = f"s{_events_digest(pending)[:20]}"  # see the module's docstring
            for view in self.views:
                with span("entai.stream.feature_update", {"entai.view": view.name}):
                    rows[view.name] = self._feed(view, batch, since, history, file_id)
        held = {e.event_id for e, _ in quarantined}
        apart = sum(d.event.event_id in held or d.event.event_id in erased for d in deliveries)
        skipped = len(deliveries) - len(new) - apart
        report = BatchReport(
            len(deliveries), len(new), skipped, written, rows, quarantined, len(erased)
        )
        logger.info(
            "stream batch",
            extra={"source": self.source, "events": report.events, "written": report.written},
        )
        return report

    def _drop_erased(self, events: list[Event]) -> tuple[list[Event], set[str]]:
        """Split off the events of subjects erased after they were received."""
        if self.erased is None or not events:
            return events, set()
        flags = self.erased.erased(events)
        dropped = {e.event_id for e, hit in zip(events, flags, strict=True) if hit}
        if dropped:
            logger.warning(
                "events of erased subjects dropped",
                extra={"source": self.source, "events": len(dropped)},
            )
        return [e for e in events if e.event_id not in dropped], dropped

    def _screen(self, events: list[Event]) -> tuple[list[Event], tuple[tuple[Event, str], ...]]:
        """Split off the events dated more than ``max_future_skew`` after now.

        A time that does not parse is not judged here: the lake write refuses it.
        """
        if self.max_future_skew is None or not events:
            return events, ()
        now = datetime.now(UTC)
        limit = now + self.max_future_skew
        column = self.contract.event_time
        times = pd.to_datetime(
            pd.Series([e.payload.get(column) for e in events], dtype=object),
            utc=True,
            errors="coerce",
            format="ISO8601",
        )
        ahead = (times > limit).to_numpy(dtype=bool)
        if not ahead.any():
            return events, ()
        skew = self.max_future_skew.total_seconds()
        held = tuple(
            (
                e,
                f"future event: {column} {ts.isoformat()} is more than {skew:g} s after the "
                f"consumer's clock ({now.isoformat()}); quarantined, not landed",
            )
            for e, ts, far in zip(events, times, ahead, strict=True)
            if far
        )
        logger.warning(
            "future events quarantined",
            extra={"source": self.source, "events": len(held), "max_future_skew_s": skew},
        )
        return [e for e, far in zip(events, ahead, strict=True) if not far], held

    def _write_raw(self, events: Sequence[Event]) -> tuple[str, ...]:
        if not events:
            return ()
        name = f"stream-{_events_digest(events)[:32]}"
        table = event_table(events, self.contract, batch_id=name)
        dates = pc.cast(table.column(self.contract.event_time), pa.date32())  # as ingest does
        days = pc.cast(dates, pa.string())
        event_ids = pa.array([e.event_id for e in events], pa.string())
        paths: list[str] = []
        for day in pc.unique(days).to_pylist():
            mask = pc.equal(days, day)
            rel = f"raw/{self.source}/date={day}/part-{name}.parquet"
            self.bus.record(self.source, event_ids.filter(mask).to_pylist(), rel)  # write-ahead
            sink = pa.BufferOutputStream()
            pq.write_table(table.filter(mask), sink)
            self.lake.write_bytes(self.lake.path(rel), sink.getvalue().to_pybytes())
            paths.append(rel)
        return tuple(paths)

    def _lookback(self, view: FeatureView) -> timedelta | None:
        if view.name in self._history:
            return self._history[view.name]
        return view.ttl if view.transform is not None else None

    def _start(self, since: pd.Timestamp, lookback: timedelta) -> pd.Timestamp:
        """The first raw event time a recompute from ``since`` reads: its lookback's day."""
        return (since - lookback).tz_convert(UTC).floor("D")

    def _sync_mirror(self, since: pd.Timestamp, days: set[str]) -> RawMirror | None:
        """The mirror, caught up with the lake (None: no mirror); a view reaching back
        before its floor reads the lake (:class:`_History`). ``days``: the batch's
        event days, where it just landed its files."""
        if self._mirror is None or self._longest is None:
            return None
        with span("entai.stream.mirror", {"entai.rows": self._mirror.rows}):
            held = self._mirror.sync(self._start(since, self._longest), days=days)
        if not held:
            logger.info(
                "stream batch older than the raw mirror; history read from the lake",
                extra={"source": self.source, "since": str(since)},
            )
        return self._mirror

    def _feed(
        self,
        view: FeatureView,
        batch: pd.DataFrame,
        since: pd.Timestamp,
        history: _History,
        file_id: str,
    ) -> int:
        lookback = self._lookback(view)
        if lookback is None:
            features = compute_view(view, batch)
        else:
            key = _entity_column(view, batch)
            values = batch[key].unique() if key is not None else None
            raw = history.frame(self._start(since, lookback), key, values, self._history_frame)
            features = compute_view(view, batch if raw.empty else raw)  # the batch is in it
            features = features.loc[features[EVENT_TIMESTAMP] >= since].reset_index(drop=True)
        return _store(view, features, lake=self.lake, online=self.online, file_id=file_id)

    def _history_frame(self, start: pd.Timestamp, key: str | None, values: Any) -> pd.DataFrame:
        """Raw events of the source from ``start``'s day on, read from the lake (with
        ``key``: only the rows whose ``key`` is in ``values``)."""
        schema = accepted_schema(self.contract)
        dataset = pads.dataset(
            self.lake.raw(self.source),
            schema=schema.append(pa.field(_DATE, pa.string())),
            format="parquet",
            partitioning=_PARTITIONING,
            filesystem=self.lake.fs,
        )
        expr = pads.field(_DATE) >= start.tz_convert(UTC).strftime("%Y-%m-%d")
        if key is not None:
            expr = expr & pads.field(key).isin(pa.array(values).cast(schema.field(key).type))
        table = dataset.to_table(columns=schema.names, filter=expr)
        frame = table.to_pandas()
        return frame.loc[frame[self.contract.event_time] >= start].reset_index(drop=True)


def _events_digest(events: Sequence[Event]) -> str:
    """SHA-256 of the events' ids, in any order: names a batch's files, so that the
    same events, redelivered, rewrite the same files."""
    ids = "\n".join(sorted(e.event_id for e in events))
    return hashlib.sha256(ids.encode()).hexdigest()


def _entity_column(view: FeatureView, batch: pd.DataFrame) -> str | None:
    """The view's first join key that is a raw column: a view's rows for one value of
    it are computed from the events with that value alone."""
    return next((k for k in view.join_keys if k in batch.columns), None)


class _History:
    """One micro-batch's raw history reads: from the mirror when it reaches back far
    enough, else from the lake; one read per (start, key) shared by the views."""

    def __init__(self, mirror: RawMirror | None) -> None:
        self._mirror = mirror
        self._floor = None if mirror is None else mirror.floor
        self._frames: dict[tuple[pd.Timestamp, str | None], pd.DataFrame] = {}

    def frame(
        self,
        start: pd.Timestamp,
        key: str | None,
        values: Any,
        lake: Callable[[pd.Timestamp, str | None, Any], pd.DataFrame],
    ) -> pd.DataFrame:
        """A copy of the raw rows from ``start`` on whose ``key`` is in ``values``
        (a transform may change the frame it is given)."""
        if (start, key) not in self._frames:
            if self._mirror is not None and self._floor is not None and start >= self._floor:
                self._frames[start, key] = self._mirror.frame(start, key, values)
            else:
                self._frames[start, key] = lake(start, key, values)
        return self._frames[start, key].copy()
