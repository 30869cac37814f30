"""Calls to FeatureShard actors: fan a read out by owning shard, merge it back, retry.

:class:`~entai.actors.features._online_client.OnlineFeatureClient` routes with these. A read of
several views is split into one ``read_batch`` call per owning shard
(:func:`split_by_shard`), the shards are called in parallel (:func:`call_shards`, or
:func:`call_shards_async` on an event loop), and their partial results are put back in
each view's entity order (:func:`merge_parts`). A shard that dies mid-call is retried
until it is back (``max_restarts=-1``); retrying is safe because writes are idempotent
under last-write-wins and reads have no effect. A trace carrier, when given, goes to
every call as its ``trace`` keyword, so the shard's span joins the caller's trace; a
credential, when given, goes to every call (retries included) as its ``credential``
keyword (the shards' guarded methods need one, see
:class:`~entai.actors.features.FeatureShard`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import ray
from ray.exceptions import RayActorError

from entai.actors.core import TraceCarrier
from entai.actors.features._feature_shard import ShardHandle
from entai.shared.core import ServiceUnavailableError
from entai.shared.features import ReadRequest, ReadResult, rendezvous_shard

__all__ = ["Parts", "call_shards", "call_shards_async", "merge_parts", "split_by_shard"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

Parts = dict[str, list[tuple[int, np.ndarray, ReadRequest]]]
"""Per shard: (view request index, entity positions, the shard's part of the request)."""

_RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 5.0, 5.0)


def split_by_shard(
    requests: Sequence[ReadRequest], ids: Sequence[str], now: datetime
) -> tuple[Parts, dict[str, tuple[Any, ...]]]:
    """Each view's keys grouped by owning shard; one ``read_batch`` call per shard."""
    parts: Parts = {}
    for i, req in enumerate(requests):
        owners = [rendezvous_shard(k, ids) for k in req.keys]
        if len(set(owners)) == 1:  # the usual one-entity read: no index arithmetic
            idx = np.arange(len(owners))
            parts.setdefault(owners[0], []).append((i, idx, req))
            continue
        owned = np.array(owners, dtype=object)
        keys = np.array(req.keys, dtype=object)
        for sid in set(owners):
            idx = np.flatnonzero(owned == sid)
            sub = ReadRequest(req.view, keys[idx].tolist(), req.features, req.ttl)
            parts.setdefault(sid, []).append((i, idx, sub))
    return parts, {sid: ([p[2] for p in plist], now) for sid, plist in parts.items()}


def merge_parts(
    requests: Sequence[ReadRequest], parts: Parts, replies: Sequence[list[ReadResult]]
) -> list[ReadResult]:
    """Put the shards' partial results back in each view's entity order.

    A view whose keys all live on one shard got its request sent whole: that shard's
    result is already in order and is used as it is.
    """
    pieces: list[list[tuple[np.ndarray, ReadRequest, ReadResult]]] = [[] for _ in requests]
    for plist, reply in zip(parts.values(), replies, strict=True):
        for (i, idx, sent), result in zip(plist, reply, strict=True):
            pieces[i].append((idx, sent, result))
    out: list[ReadResult] = []
    for req, got in zip(requests, pieces, strict=True):
        if len(got) == 1 and got[0][1] is req:
            out.append(got[0][2])
            continue
        columns = _Columns(len(req.keys), len(req.features))
        for idx, _, result in got:
            columns.scatter(idx, result)
        out.append(columns.result(req))
    return out


def call_shards(
    handles: Mapping[str, ShardHandle],
    method: Callable[..., R],
    calls: Mapping[str, tuple[Any, ...]],
    trace: TraceCarrier | None = None,
    *,
    credential: str | None = None,
) -> list[R]:
    """Call ``method`` (of FeatureShard) on each shard of ``calls`` in parallel, retrying
    shards that died (with the same ``credential``).

    Returns:
        The replies, in the order of ``calls``.
    """
    results: dict[str, R] = {}
    pending = dict(calls)
    for delay in (0.0, *_RETRY_DELAYS_S):
        time.sleep(delay)
        refs = {s: _remote(handles[s], method, a, trace, credential) for s, a in pending.items()}
        failed: dict[str, tuple[Any, ...]] = {}
        for sid, ref in refs.items():
            try:
                results[sid] = ray.get(ref)
            except RayActorError as exc:
                logger.warning(
                    "shard %s unavailable for %s (%s); retrying", sid, method.__name__, exc
                )
                failed[sid] = pending[sid]
        if not failed:
            return [results[s] for s in calls]
        pending = failed
    raise _gone(pending, method)


async def call_shards_async(
    handles: Mapping[str, ShardHandle],
    method: Callable[..., R],
    calls: Mapping[str, tuple[Any, ...]],
    trace: TraceCarrier | None = None,
    *,
    credential: str | None = None,
) -> list[R]:
    """:func:`call_shards` on the running event loop: awaits instead of ``ray.get``."""
    results: dict[str, R] = {}
    pending = dict(calls)
    for delay in (0.0, *_RETRY_DELAYS_S):
        if delay:
            await asyncio.sleep(delay)
        sids = list(pending)
        refs = [_remote(handles[s], method, pending[s], trace, credential) for s in sids]
        replies = await asyncio.gather(*refs, return_exceptions=True)
        failed: dict[str, tuple[Any, ...]] = {}
        for sid, reply in zip(sids, replies, strict=True):
            if isinstance(reply, RayActorError):
                logger.warning(
                    "shard %s unavailable for %s (%s); retrying", sid, method.__name__, reply
                )
                failed[sid] = pending[sid]
            elif isinstance(reply, BaseException):
                raise reply
            else:
                results[sid] = reply
        if not failed:
            return [results[s] for s in calls]
        pending = failed
    raise _gone(pending, method)


def _remote(
    handle: ShardHandle,
    method: Callable[..., R],
    args: tuple[Any, ...],
    trace: TraceCarrier | None,
    credential: str | None,
) -> Any:
    """Start ``method`` (named by the FeatureShard method itself) on one shard actor."""
    keywords: dict[str, Any] = {}
    if trace is not None:
        keywords["trace"] = trace
    if credential is not None:
        keywords["credential"] = credential
    return getattr(handle, method.__name__).remote(*args, **keywords)


def _gone(pending: Mapping[str, Any], method: Callable[..., Any]) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"feature shards {sorted(pending)} did not come back for {method.__name__}",
        details={"shards": sorted(pending), "method": method.__name__},
    )


class _Columns:
    """Output columns of one view's read, filled from the shards' partial results."""

    def __init__(self, entities: int, features: int) -> None:
        # Values stay Python lists: numpy would broadcast list-valued features into
        # its own dimensions on a fancy-indexed assignment.
        self.values: list[list[Any]] = [[None] * entities for _ in range(features)]
        self.statuses = [np.full(entities, None, dtype=object) for _ in range(features)]
        self.stamps = np.full(entities, None, dtype=object)

    def scatter(self, idx: np.ndarray, part: ReadResult) -> None:
        positions = idx.tolist()
        for f, (vals, stats) in enumerate(zip(part.values, part.statuses, strict=True)):
            column = self.values[f]
            for position, value in zip(positions, vals, strict=True):
                column[position] = value
            self.statuses[f][idx] = stats
        self.stamps[idx] = part.event_timestamps

    def result(self, req: ReadRequest) -> ReadResult:
        return ReadResult(
            tuple(req.features),
            [list(v) for v in self.values],
            [s.tolist() for s in self.statuses],
            self.stamps.tolist(),
        )
