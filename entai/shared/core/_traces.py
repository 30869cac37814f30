"""The local trace files: finished spans as JSON lines, and reading one request's trace back.

When no OTLP endpoint is configured, every traced process appends its finished spans
to a file of its own under the trace directory (``<home>/traces/<process>.jsonl``),
one JSON object per span (:meth:`SpanRecord.to_dict`). :func:`read_trace` finds the
trace ids of the spans that carry a request id (attribute :data:`REQUEST_ID_ATTR`) and
returns every span of those traces, from every file; :func:`span_tree` orders them
parent before child for printing. Pure Python: the exporter that writes these files
lives with the tracer (:mod:`entai.actors.core`), the reader serves ``entai trace``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REQUEST_ID_ATTR",
    "TRACE_SUFFIX",
    "SpanNode",
    "SpanRecord",
    "read_spans",
    "read_trace",
    "span_tree",
]

logger = logging.getLogger(__name__)

REQUEST_ID_ATTR = "entai.request_id"
"""The span attribute holding the request id (the ``X-Request-ID`` of the response)."""
TRACE_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class SpanRecord:
    """One finished span as the local trace files keep it.

    Attributes:
        trace_id: 32 hex digits.
        span_id: 16 hex digits.
        parent_id: The parent span's id (None for a trace's root).
        name: What the span timed (``entai.score``, ``POST /v1/predict/{model}``).
        service: The process kind that recorded it (``ingress``, ``drift-monitor``...).
        start_ns: Start, nanoseconds since the epoch.
        end_ns: End, nanoseconds since the epoch.
        status: ``UNSET``, ``OK`` or ``ERROR``.
        attributes: The span's attributes.
        links: ``(trace_id, span_id)`` of spans it is linked to (a batch's other members).
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str = "UNSET"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()

    @property
    def duration_ms(self) -> float:
        """How long the span took, in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def request_id(self) -> str | None:
        """The request id attribute, if the span carries one."""
        value = self.attributes.get(REQUEST_ID_ATTR)
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one line of a trace file."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "service": self.service,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "status": self.status,
            "attributes": dict(self.attributes),
            "links": [list(link) for link in self.links],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpanRecord:
        """Parse one line's object (raises KeyError, TypeError or ValueError if it is not one)."""
        return cls(
            trace_id=str(data["trace_id"]),
            span_id=str(data["span_id"]),
            parent_id=None if data.get("parent_id") is None else str(data["parent_id"]),
            name=str(data["name"]),
            service=str(data.get("service", "")),
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            status=str(data.get("status", "UNSET")),
            attributes=dict(data.get("attributes") or {}),
            links=tuple((str(t), str(s)) for t, s in data.get("links") or ()),
        )


def read_spans(trace_dir: Path) -> Iterator[SpanRecord]:
    """Every span in the directory's trace files; unreadable lines are skipped (logged)."""
    if not trace_dir.is_dir():
        return
    for path in sorted(trace_dir.glob(f"*{TRACE_SUFFIX}")):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    yield SpanRecord.from_dict(json.loads(line))
                except (KeyError, TypeError, ValueError):
                    # A line a process was writing when it died, or not ours.
                    logger.debug(
                        "skipping a bad span line", extra={"file": path.name, "line": number}
                    )


def read_trace(trace_dir: Path, request_id: str) -> list[SpanRecord]:
    """Every span of the traces a request id is recorded in, sorted by start time.

    A request's trace also holds the spans other processes recorded for it (the
    shards, the drift monitor, a stream worker), found by trace id. Empty when no
    span carries the request id.
    """
    spans = list(read_spans(trace_dir))
    traces = {s.trace_id for s in spans if s.request_id == request_id}
    return sorted((s for s in spans if s.trace_id in traces), key=lambda s: s.start_ns)


@dataclass(frozen=True)
class SpanNode:
    """A span and the spans recorded under it, children by start time."""

    span: SpanRecord
    children: tuple[SpanNode, ...]

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SpanRecord]]:
        """``(depth, span)`` for this node and every descendant, parents first."""
        yield depth, self.span
        for child in self.children:
            yield from child.walk(depth + 1)


def span_tree(spans: Iterable[SpanRecord]) -> list[SpanNode]:
    """The spans as trees: roots are spans whose parent is not among them.

    A span whose parent is missing (its process has not exported it yet, or it was
    sampled out) becomes a root of its own rather than being dropped.
    """
    ordered = sorted(spans, key=lambda s: s.start_ns)
    ids = {s.span_id for s in ordered}
    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for s in ordered:
        if s.parent_id is not None and s.parent_id in ids and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            roots.append(s)

    def node(s: SpanRecord, seen: frozenset[str]) -> SpanNode:
        kids: Sequence[SpanRecord] = children.get(s.span_id, [])
        inner = seen | {s.span_id}
        return SpanNode(s, tuple(node(k, inner) for k in kids if k.span_id not in inner))

    return [node(r, frozenset()) for r in roots]
