"""Per-client token buckets: how often one peer may fail authentication.

Each client (peer address) has a bucket of ``burst`` tokens refilled at
``rate_per_s``; every attempt that is not already known to be good spends one. An empty
bucket means 429 with ``Retry-After`` (the time until a token is back), and no work at
all for that request: no lookup, no audit entry of its own. Buckets of at most
``max_clients`` clients are kept (least recently seen dropped first), so many
addresses cost bounded memory; a dropped client starts again with a full bucket.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ClientRateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class ClientRateLimiter:
    """Token buckets keyed by client.

    Args:
        rate_per_s: Tokens a bucket regains per second.
        burst: A bucket's capacity (and a new client's start).
        max_clients: Buckets kept; the least recently used goes first.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self._burst, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket

    def acquire(self, client: str) -> float:
        """Spend one of ``client``'s tokens.

        Returns:
            0.0 when a token was spent; otherwise the seconds until one is back (and
            nothing was spent).
        """
        now = self._clock()
        with self._lock:
            bucket = self._bucket(client, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self._rate

    def refund(self, client: str) -> None:
        """Give back a token spent on an attempt that turned out good."""
        now = self._clock()
        with self._lock:
            bucket = self._bucket(client, now)
            bucket.tokens = min(self._burst, bucket.tokens + 1.0)

    def tokens(self, client: str) -> float:
        """``client``'s tokens now (a full bucket for a client not seen)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                return self._burst
            return min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
