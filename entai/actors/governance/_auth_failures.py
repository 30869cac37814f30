"""Failed authentication, counted per client and window for the audit log.

A serving replica answers a bad token itself (its cache, a negative cache, a rate
limit), so a flood of bad tokens never reaches the governance service one request at
a time. What the audit log needs from such a flood is who, how often and when: an
:class:`AuthFailureTally` counts failures per client (peer address) and reason, and
:meth:`AuthFailureTally.drain` closes the window into one :class:`FailedAuthWindow`
per client, which the GovernanceChecker writes as one audit entry each
(:meth:`~entai.actors.governance._checker.GovernanceChecker.record_auth_failures`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["OTHER_CLIENTS", "AuthFailureTally", "FailedAuthWindow"]

OTHER_CLIENTS = "other"
"""The client name failures are counted under once a window holds ``max_clients``."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FailedAuthWindow:
    """The failed authentications of one client over one window.

    Attributes:
        client: Peer address (or :data:`OTHER_CLIENTS`).
        count: Failures in the window, every reason together.
        first_seen: Time of the first failure in the window.
        last_seen: Time of the last failure in the window.
        reasons: Failures by reason (``missing``, ``malformed``, ``unknown``,
            ``rate_limited``, ...).
    """

    client: str
    window_start: datetime
    window_end: datetime
    count: int
    first_seen: datetime
    last_seen: datetime
    reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _Client:
    first_seen: datetime
    last_seen: datetime
    reasons: Counter[str]


class AuthFailureTally:
    """Counts failed authentications per client until the window is drained.

    Thread-safe: a replica's event loop adds, its refresher thread drains.

    Args:
        window_s: Length of a window; :meth:`due` says when it has passed.
        max_clients: Distinct clients kept per window; later ones are counted under
            :data:`OTHER_CLIENTS`, so a flood from many addresses costs bounded memory.
        clock: Wall-clock time (injectable for tests).
    """

    def __init__(
        self,
        window_s: float,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._window = timedelta(seconds=window_s)
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = clock()
        self._clients: dict[str, _Client] = {}

    def add(self, client: str, reason: str) -> None:
        """Count one failure of ``client`` for ``reason``."""
        now = self._clock()
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                if len(self._clients) >= self._max_clients:
                    client = OTHER_CLIENTS
                    entry = self._clients.get(client)
                if entry is None:
                    entry = self._clients[client] = _Client(now, now, Counter())
            entry.last_seen = now
            entry.reasons[reason] += 1

    def due(self) -> bool:
        """Whether the current window has lasted ``window_s``."""
        return self._clock() - self._opened >= self._window

    def pending(self) -> int:
        """Failures counted in the open window."""
        with self._lock:
            return sum(c.reasons.total() for c in self._clients.values())

    def drain(self) -> list[FailedAuthWindow]:
        """Close the window: one record per client that failed in it, oldest first."""
        now = self._clock()
        with self._lock:
            clients, self._clients = self._clients, {}
            opened, self._opened = self._opened, now
        windows = [
            FailedAuthWindow(
                client=name,
                window_start=opened,
                window_end=now,
                count=entry.reasons.total(),
                first_seen=entry.first_seen,
                last_seen=entry.last_seen,
                reasons=dict(sorted(entry.reasons.items())),
            )
            for name, entry in clients.items()
        ]
        return sorted(windows, key=lambda w: (w.first_seen, w.client))

    def restore(self, windows: list[FailedAuthWindow]) -> None:
        """Put back windows that could not be delivered, to go out with the next drain.

        Their counts join the open window under the same clients; their first-seen
        times are kept.
        """
        with self._lock:
            for w in windows:
                entry = self._clients.get(w.client)
                if entry is None:
                    self._clients[w.client] = _Client(w.first_seen, w.last_seen, Counter(w.reasons))
                    continue
                entry.first_seen = min(entry.first_seen, w.first_seen)
                entry.last_seen = max(entry.last_seen, w.last_seen)
                entry.reasons.update(w.reasons)
            if windows:
                self._opened = min(self._opened, *(w.window_start for w in windows))
