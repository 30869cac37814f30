"""Platform events: what the platform itself announces on the event bus.

Three kinds, each on a source of its own whose name starts with ``entai-`` (a prefix no
data contract may take, so no caller can publish one through ``POST /v1/events``):

- ``entai-data-landed``: rows of a source landed in the lake's raw zone, one event per
  source and date partition, naming the files;
- ``entai-alias-moved``: a model's alias now points at another version (set, promote or
  rollback), with the previous holder;
- ``entai-retrain-requested``: the drift monitor filed a retrain request (the request
  itself is a durable file in the lake; the event wakes the retrain worker).

An event's id is derived from what it announces (the files, the alias revision, the
request id), so announcing the same thing twice gives the same id and the bus's ledger
keeps one. Platform streams nobody consumes are bounded by the bus
(:data:`PLATFORM_STREAM_MAXLEN` entries, oldest dropped first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from entai.shared.data._contracts import RESERVED_SOURCE_PREFIX
from entai.shared.data._events import Event

__all__ = [
    "PLATFORM_SOURCE_PREFIX",
    "PLATFORM_STREAM_MAXLEN",
    "PlatformEventKind",
    "alias_moved",
    "data_landed",
    "is_platform_source",
    "retrain_requested",
]

PLATFORM_SOURCE_PREFIX = RESERVED_SOURCE_PREFIX
PLATFORM_STREAM_MAXLEN = 10_000
"""Entries a platform stream keeps at most; the oldest are dropped first."""


class PlatformEventKind(StrEnum):
    """The platform's own event sources."""

    DATA_LANDED = "entai-data-landed"
    ALIAS_MOVED = "entai-alias-moved"
    RETRAIN_REQUESTED = "entai-retrain-requested"


def is_platform_source(source: str) -> bool:
    """Whether ``source`` is reserved for platform events."""
    return source.startswith(PLATFORM_SOURCE_PREFIX)


def _event(kind: PlatformEventKind, key: str, payload: Mapping[str, Any]) -> Event:
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return Event(event_id=f"{kind.value}:{digest}", source=kind.value, payload=dict(payload))


def _partition(path: str) -> str:
    """``raw/<source>/date=2026-01-02/part-x.parquet`` -> ``date=2026-01-02``."""
    parts = path.split("/")
    return next((p for p in parts if p.startswith("date=")), "")


def data_landed(source: str, files: Sequence[str], rows: int) -> list[Event]:
    """One ``entai-data-landed`` event per date partition the files fall in.

    Args:
        source: The data source the rows belong to.
        files: Lake paths written (relative to the lake root).
        rows: Rows written in all; each event carries its share of the files, and the
            total only when one partition took them all (per-file counts are not kept).
    """
    by_partition: dict[str, list[str]] = {}
    for path in files:
        by_partition.setdefault(_partition(path), []).append(path)
    single = len(by_partition) == 1
    return [
        _event(
            PlatformEventKind.DATA_LANDED,
            "\n".join([source, *sorted(paths)]),
            {
                "source": source,
                "partition": partition,
                "files": sorted(paths),
                "rows": rows if single else None,
            },
        )
        for partition, paths in sorted(by_partition.items())
    ]


def alias_moved(
    model: str, alias: str, version: int, previous: int | None, *, revision: int, kind: str
) -> Event:
    """The ``entai-alias-moved`` event of one alias move (``kind``: set, promote, rollback)."""
    return _event(
        PlatformEventKind.ALIAS_MOVED,
        f"{model}\n{revision}",
        {
            "model": model,
            "alias": alias,
            "version": version,
            "previous": previous,
            "revision": revision,
            "kind": kind,
        },
    )


def retrain_requested(model: str, version: int, request_id: str, reason: str) -> Event:
    """The ``entai-retrain-requested`` event of a filed retrain request."""
    return _event(
        PlatformEventKind.RETRAIN_REQUESTED,
        request_id,
        {"model": model, "version": version, "request_id": request_id, "reason": reason},
    )
