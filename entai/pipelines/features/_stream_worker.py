"""The ingestion and feature services: stream consumers that run as long as the platform.

``entai up`` (and the demo) start, for every source in ``settings.streams``, that many
:class:`StreamWorker` actors (``entai-stream-<source>-<i>``), one consumer group. Each
runs a :class:`StreamConsumer` in a thread of its own, continuously: read a micro-batch,
land it in the lake exactly once, update the source's feature views offline and
online, acknowledge, then announce the landed files on the bus (``entai-data-landed``,
one event per date partition).

A batch that fails is retried event by event at once, so one bad event cannot hold
the others back: the events that land are acknowledged, the ones that fail stay on the
bus and come back after ``redelivery_s``. An event that has failed ``max_attempts``
times goes to the dead letters (:class:`DeadLetters`, in the lake under
``deadletter/<source>/``, with its error) and is acknowledged; ``entai events
dead-letters replay`` puts it back on the bus. An event dated more than
``max_future_skew_s`` ahead of the worker's clock is quarantined there too (its error
says so) instead of landing; a replay lands it once its time has come. A worker killed
mid-batch is restarted by Ray and its unacknowledged events are delivered again; the
consumer's write-ahead ledger lands each in the lake once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ray

from entai.actors.bus import Delivery, EventBus, PlatformEvents, bus_from_settings
from entai.actors.core import Metrics, configure_tracing, service_actor
from entai.actors.features import OnlineFeatureClient
from entai.actors.services import Services, platform_credential
from entai.pipelines.features._stream import BatchReport, StreamConsumer
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.data import Event, Lake, data_landed, load_contract
from entai.shared.features import Definitions
from entai.shared.governance import ErasedSubjects
from entai.shared.settings import EntaiSettings, StreamSettings, resolve_hmac_key

__all__ = [
    "STREAM_SERVICE",
    "STREAM_WORKER_PREFIX",
    "DeadLetter",
    "DeadLetters",
    "StreamWorker",
    "StreamWorkerActor",
    "start_stream_workers",
    "stream_worker_name",
    "stream_worker_names",
    "wait_for_backlog",
]

log = logging.getLogger(__name__)

STREAM_SERVICE = "stream-worker"
"""The service name a stream worker presents to the feature shards it writes to."""

STREAM_WORKER_PREFIX = "entai-stream-"
"""Every stream worker's actor name starts with it."""
_ZONE = "deadletter"
_ERROR_CHARS = 2_000


def stream_worker_name(source: str, index: int) -> str:
    """The actor name of a source's ``index``-th consumer."""
    return f"{STREAM_WORKER_PREFIX}{source}-{index}"


def stream_worker_names(settings: EntaiSettings) -> list[str]:
    """Every stream worker the settings configure, source by source."""
    return [
        stream_worker_name(source, i)
        for source, stream in settings.streams.items()
        for i in range(stream.consumers)
    ]


@dataclass(frozen=True)
class DeadLetter:
    """An event that failed ``attempts`` times, and the last error."""

    event: Event
    error: str
    attempts: int
    at: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the lake."""
        out = asdict(self)
        out["event"] = self.event.model_dump(mode="json")
        return out


class DeadLetters:
    """A source's dead letters in the lake: ``deadletter/<source>/<event id>.json``.

    Args:
        lake: The lake.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def __repr__(self) -> str:
        return f"DeadLetters(lake={self.lake!r})"

    def _path(self, source: str, event_id: str) -> str:
        return self.lake.path(_ZONE, source, f"{event_id}.json")

    def add(self, letter: DeadLetter) -> None:
        """Keep one event (a repeat of its id replaces it)."""
        self.lake.write_json(
            self._path(letter.event.source, letter.event.event_id), letter.to_dict()
        )

    def entries(self, source: str) -> list[DeadLetter]:
        """The source's dead letters, oldest first."""
        letters = [
            DeadLetter(
                event=Event.model_validate(raw["event"]),
                error=str(raw["error"]),
                attempts=int(raw["attempts"]),
                at=str(raw["at"]),
            )
            for raw in self.lake.list_json(self.lake.path(_ZONE, source))
        ]
        return sorted(letters, key=lambda letter: letter.at)

    def replay(self, bus: EventBus, source: str, event_ids: Sequence[str] | None = None) -> int:
        """Publish dead letters back on the bus (all, or the ids given); return how many.

        A letter leaves the dead letters only once the bus has taken it.

        Raises:
            NotFoundError: an id given is not among the source's dead letters.
        """
        letters = {letter.event.event_id: letter for letter in self.entries(source)}
        wanted = list(letters) if event_ids is None else list(event_ids)
        unknown = [i for i in wanted if i not in letters]
        if unknown:
            raise NotFoundError(
                f"no dead letter {unknown[0]!r} for source {source!r}",
                details={"source": source, "event_ids": unknown},
            )
        if wanted:
            bus.publish([letters[i].event for i in wanted])
        for event_id in wanted:
            self.lake.fs.delete_file(self._path(source, event_id))
        return len(wanted)


class StreamWorker:
    """One consumer of one source, running until the platform stops.

    Args:
        settings: Platform settings (absolute paths); ``settings.streams[source]``
            configures the stream.
        source: The event source.
        index: This consumer's index in the source's group (its name in the group).
        bus: The event bus; default: the settings' bus.
        online: The online store client; default: the platform's shards.
        run: Start the consuming thread (False: call :meth:`step` yourself).
    """

    def __init__(
        self,
        settings: EntaiSettings,
        source: str,
        *,
        index: int = 0,
        bus: EventBus | None = None,
        online: OnlineFeatureClient | None = None,
        run: bool = True,
    ) -> None:
        stream = settings.streams.get(source)
        if stream is None:
            raise InvalidInputError(
                f"no stream {source!r} in settings.streams",
                details={"field": "streams", "source": source, "known": sorted(settings.streams)},
            )
        configure_tracing(settings.observability, "stream-worker")
        self._stream: StreamSettings = stream
        self._source = source
        self._lake = Lake(settings.lake.root)
        self._bus = bus or bus_from_settings(settings, redelivery_s=stream.redelivery_s)
        views = (
            tuple(Definitions.from_module(stream.definitions_module).views.values())
            if stream.definitions_module
            else ()
        )
        if online is None and views:
            online = OnlineFeatureClient(
                Services.of(settings).shards(),
                credential=platform_credential(settings, STREAM_SERVICE),
            )
        self._consumer = StreamConsumer(
            self._bus,
            load_contract(stream.contract),
            lake=self._lake,
            consumer=stream_worker_name(source, index),
            views=list(views),
            online=online,
            batch_size=stream.batch_size,
            block_s=stream.block_s,
            max_future_skew=timedelta(seconds=stream.max_future_skew_s),
            quarantine=self._quarantine,
            erased=ErasedSubjects(self._lake, resolve_hmac_key(settings)),
            max_batch_size=stream.max_batch_size,
            mirror_rows=stream.mirror_rows,
            mirror_full_listing_s=stream.mirror_full_listing_s,
        )
        self._dead = DeadLetters(self._lake)
        self._events = PlatformEvents(settings, bus=self._bus)
        self._attempts: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if run:
            self._thread = threading.Thread(target=self._loop, name=f"stream-{source}", daemon=True)
            self._thread.start()

    def __repr__(self) -> str:
        return f"StreamWorker(source={self._source!r}, consumer={self._consumer.consumer!r})"

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - the bus is down: wait, then go on
                self._last_error = _short(exc)
                log.warning(
                    "stream read failed; retrying",
                    extra={"source": self._source, "error": self._last_error},
                )
                self._stop.wait(1.0)

    def step(self) -> int:
        """Consume one micro-batch; return how many deliveries it held (0: none came)."""
        deliveries = self._consumer.read()
        if not deliveries:
            Metrics.stream_backlog(self._source, self._bus.backlog(self._source))
            return 0
        try:
            self._land(deliveries)
        except Exception as exc:  # noqa: BLE001 - isolate the failing events, one by one
            log.warning(
                "stream batch failed; retrying its events one by one",
                extra={"source": self._source, "events": len(deliveries), "error": _short(exc)},
            )
            for delivery in deliveries:
                self._one(delivery)
        Metrics.stream_backlog(self._source, self._bus.backlog(self._source))
        return len(deliveries)

    def _land(self, deliveries: Sequence[Delivery]) -> BatchReport:
        report = self._consumer.process(deliveries)
        self._consumer.settle(deliveries, report)
        if report.files:
            self._events.publish(data_landed(self._source, report.files, report.written))
        for delivery in deliveries:
            self._attempts.pop(delivery.event.event_id, None)
        self._count("landed", report.written)
        self._count("duplicate", report.duplicates)
        self._count("erased", report.erased)
        return report

    def _quarantine(self, held: Sequence[tuple[Event, str]]) -> None:
        """Keep future-dated events with the dead letters, the reason as their error."""
        at = datetime.now(UTC).isoformat()
        for event, reason in held:
            self._dead.add(DeadLetter(event=event, error=reason, attempts=1, at=at))
        self._count("quarantined", len(held))
        log.warning(
            "future events quarantined",
            extra={"source": self._source, "event_ids": [e.event_id for e, _ in held]},
        )

    def _one(self, delivery: Delivery) -> None:
        event_id = delivery.event.event_id
        try:
            self._land([delivery])
        except Exception as exc:  # noqa: BLE001 - counted, then dead-lettered
            self._attempts[event_id] += 1
            self._last_error = _short(exc)
            if self._attempts[event_id] < self._stream.max_attempts:
                return  # stays on the bus; delivered again after redelivery_s
            self._dead.add(
                DeadLetter(
                    event=delivery.event,
                    error=self._last_error,
                    attempts=self._attempts.pop(event_id),
                    at=datetime.now(UTC).isoformat(),
                )
            )
            self._bus.reject(self._source, [delivery])  # not DONE: a replay must land it
            self._count("dead_letter", 1)
            log.error(
                "event dead-lettered",
                extra={"source": self._source, "event_id": event_id, "error": self._last_error},
            )

    def _count(self, outcome: str, n: int) -> None:
        if n:
            self._counts[outcome] += n
            Metrics.stream_events(self._source, outcome, n)

    def status(self) -> dict[str, Any]:
        """The worker's counts, the source's backlog and its last error."""
        return {
            "source": self._source,
            "consumer": self._consumer.consumer,
            "running": self._thread is not None and self._thread.is_alive(),
            "backlog": self._bus.backlog(self._source),
            "counts": dict(self._counts),
            "retrying": len(self._attempts),
            "last_error": self._last_error,
        }

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after the batch in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]


StreamWorkerActor = ray.remote(StreamWorker)


def start_stream_workers(settings: EntaiSettings, namespace: str | None = None) -> dict[str, Any]:
    """Create (or find) every stream worker the settings configure; name -> handle.

    Like every service they are named, detached and restarted forever, and reserve no
    CPU. Pass settings with absolute paths (``settings.resolved()``).
    """
    handles: dict[str, Any] = {}
    for source, stream in settings.streams.items():
        for i in range(stream.consumers):
            name = stream_worker_name(source, i)
            handles[name] = service_actor(
                StreamWorkerActor,
                name,
                namespace or settings.ray.namespace,
                settings,
                source,
                index=i,
            )
    return handles


def wait_for_backlog(bus: EventBus, source: str, *, timeout_s: float, poll_s: float = 0.1) -> int:
    """Wait until the source's backlog is empty or ``timeout_s`` passed; return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        backlog = bus.backlog(source)
        if backlog == 0 or time.monotonic() >= deadline:
            return backlog
        time.sleep(poll_s)
