"""One trace per request across the platform's processes, with OpenTelemetry.

Each process that handles part of a request configures its tracer once, from the
settings it was started with (:func:`configure_tracing`: the ingress replica, each
feature shard, the drift monitor, each stream worker). Until then, and whenever
``observability.tracing`` is off, :func:`span` yields None and :func:`trace_carrier`
returns None: a disabled call costs one global lookup, and nothing is imported from
the SDK.

Context crosses process boundaries explicitly. The caller takes a W3C trace context
carrier (``{"traceparent": "00-<trace>-<span>-01"}``, :func:`trace_carrier`) and hands
it over with the work: as the ``trace`` keyword of an actor method (``FeatureShard.
read_batch``, ``DriftMonitor.record``), or in the event envelope on the bus
(``Event.trace``). The callee opens its span with ``span(name, parent=carrier)``.
Work done for several requests at once (a tap flush, a stream micro-batch) is a child
of its first member and links the others.

Spans go to ``observability.otlp_endpoint`` (OTLP over HTTP) when set, else to a JSON
lines file per process under ``observability.trace_dir``
(:class:`~entai.shared.core.SpanRecord` per line; ``entai trace`` reads them). Export
is batched in a background thread (at most ``export_interval_ms`` behind).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entai.shared.core import REQUEST_ID_ATTR, TRACE_SUFFIX, SpanRecord, request_id
from entai.shared.settings import ObservabilitySettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "TraceCarrier",
    "configure_tracing",
    "reset_tracing",
    "span",
    "trace_carrier",
    "tracing_enabled",
]

logger = logging.getLogger(__name__)

TraceCarrier = dict[str, str]
"""W3C trace context headers (``traceparent``, maybe ``tracestate``) of one span."""


@dataclass(frozen=True)
class _Tracing:
    """A configured process: its provider, tracer and what it was configured with."""

    settings: ObservabilitySettings
    service: str
    provider: TracerProvider
    tracer: Tracer


_state: _Tracing | None = None
_lock = threading.Lock()


def tracing_enabled() -> bool:
    """Whether this process records spans."""
    return _state is not None


def configure_tracing(settings: ObservabilitySettings, service: str) -> bool:
    """Set this process's tracer up from the settings (idempotent); whether it traces.

    Args:
        settings: The ``observability`` section, resolved (``trace_dir`` absolute).
        service: What this process is (``ingress``, ``feature-shard``, ``drift-monitor``,
            ``stream-worker``); recorded on every span and in the trace file's name.
    """
    global _state
    if not settings.tracing:
        return False
    with _lock:
        if _state is not None and _state.settings == settings and _state.service == service:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create(
                {"service.name": settings.service_name, "entai.service": service}
            ),
        )
        provider.add_span_processor(
            BatchSpanProcessor(
                _exporter(settings, service), schedule_delay_millis=settings.export_interval_ms
            )
        )
        old, _state = _state, _Tracing(settings, service, provider, provider.get_tracer("entai"))
    if old is not None:
        old.provider.shutdown()
    logger.info(
        "tracing on",
        extra={"service": service, "otlp": settings.otlp_endpoint is not None},
    )
    return True


def reset_tracing() -> None:
    """Export what is pending and stop tracing in this process (tests, shutdown)."""
    global _state
    with _lock:
        old, _state = _state, None
    if old is not None:
        old.provider.force_flush()
        old.provider.shutdown()


def _exporter(settings: ObservabilitySettings, service: str) -> Any:
    if settings.otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    if settings.trace_dir is None:
        raise ValueError("observability.trace_dir is unset: pass resolved settings")
    name = f"{service}-{socket.gethostname()}-{os.getpid()}{TRACE_SUFFIX}"
    return _JsonLinesExporter(Path(settings.trace_dir) / name, service)


class _JsonLinesExporter:
    """A span exporter that appends :class:`SpanRecord` lines to one file of this process."""

    def __init__(self, path: Path, service: str) -> None:
        self._path = path
        self._service = service

    def export(self, spans: Sequence[ReadableSpan]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(
            json.dumps(_record(s, self._service).to_dict(), default=str) + "\n" for s in spans
        )
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as out:
                out.write(lines)
        except OSError as exc:
            logger.warning("spans not exported", extra={"error": repr(exc), "spans": len(spans)})
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing is held open between exports."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export is written when it returns."""
        return True


def _record(s: ReadableSpan, service: str) -> SpanRecord:
    ctx = s.get_span_context()
    assert ctx is not None  # a finished SDK span always has one
    parent = s.parent
    return SpanRecord(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_id=None if parent is None else f"{parent.span_id:016x}",
        name=s.name,
        service=service,
        start_ns=s.start_time or 0,
        end_ns=s.end_time or s.start_time or 0,
        status=s.status.status_code.name,
        attributes=dict(s.attributes or {}),
        links=tuple(
            (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in s.links
        ),
    )


_NO_SPAN: AbstractContextManager[None] = nullcontext()
"""What :func:`span` gives when not tracing: stateless, so one serves every block."""


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: Mapping[str, str] | None = None,
    links: Sequence[Mapping[str, str] | None] = (),
    server: bool = False,
) -> AbstractContextManager[Span | None]:
    """Time a block as a span, the current span inside it; None when not tracing.

    Not tracing, the block gets a shared no-op context (no generator per call: the
    serving path opens several spans per request).

    Args:
        name: What the block does (``entai.online.read``).
        attributes: Span attributes (strings, numbers, booleans or lists of one of them);
            the bound request id is added when there is one.
        parent: A carrier from another process or thread; default: the current span.
        links: Carriers of other spans the block also works for (a batch's members).
        server: The span of a request received from outside (kind SERVER).
    """
    state = _state
    if state is None:
        return _NO_SPAN
    return _span(state, name, attributes, parent=parent, links=links, server=server)


@contextmanager
def _span(
    state: _Tracing,
    name: str,
    attributes: Mapping[str, Any] | None,
    *,
    parent: Mapping[str, str] | None,
    links: Sequence[Mapping[str, str] | None],
    server: bool,
) -> Iterator[Span | None]:
    """:func:`span` while tracing."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    context = propagator.extract(dict(parent)) if parent else None
    span_links = []
    for carrier in links:
        if carrier:
            linked = trace.get_current_span(propagator.extract(dict(carrier))).get_span_context()
            if linked.is_valid:
                span_links.append(trace.Link(linked))
    attrs: dict[str, Any] = dict(attributes or {})
    rid = request_id()
    if rid is not None:
        attrs.setdefault(REQUEST_ID_ATTR, rid)
    kind = trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL
    with state.tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attrs, links=span_links
    ) as current:
        yield current


def trace_carrier() -> TraceCarrier | None:
    """The current span's W3C carrier, to hand to another process; None when not tracing."""
    if _state is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: TraceCarrier = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None
