"""Circuit breakers: a dependency that keeps failing is refused at once, then probed.

A serving replica calls three services on the request path: governance (token
lookups, authorization the cache cannot decide), the online store (feature reads) and
the model registry (the model routes). Each call goes through that dependency's
:class:`CircuitBreaker`, which bounds it with a timeout and counts failures (a
:class:`~entai.shared.core.ServiceUnavailableError`, which is what a timeout, a dead
actor or an unreachable Redis become). After ``failures`` in a row the breaker
*opens*: calls fail at once with 503 and ``Retry-After`` for ``open_s``, instead of
each waiting out its timeout. Then it is *half-open*: one call goes through as a probe
(the others are still refused); its success closes the breaker, its failure opens it
again. Errors that mean the service answered (a denial, a missing model) are not
failures.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]

T = TypeVar("T")


class BreakerState(StrEnum):
    """Where a breaker is: passing calls, refusing them, or letting one probe through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Fail fast on a dependency that keeps failing; probe it again after a while.

    Args:
        name: The dependency, as named in errors (``governance``, ``online_store``...).
        failures: Failures in a row that open the breaker.
        open_s: How long an open breaker refuses before letting a probe through.
        timeout_s: Bound on one call (:meth:`call` and :meth:`call_sync`'s caller).
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        open_s: float = 5.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._threshold = failures
        self._open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The breaker's state now."""
        with self._lock:
            if self._opened_at is None:
                return BreakerState.CLOSED
            if self._probing or self._clock() - self._opened_at >= self._open_s:
                return BreakerState.HALF_OPEN
            return BreakerState.OPEN

    def before(self) -> None:
        """Admit a call, or refuse it with ServiceUnavailableError (breaker open).

        Every admitted call must end in :meth:`succeeded` or :meth:`failed` (or
        :meth:`released` when it ended in a way that says nothing about the service).
        """
        with self._lock:
            if self._opened_at is None:
                return
            waited = self._clock() - self._opened_at
            if waited >= self._open_s and not self._probing:
                self._probing = True  # this call is the probe
                return
            retry = max(1, math.ceil(self._open_s - waited)) if waited < self._open_s else 1
        raise ServiceUnavailableError(
            f"{self.name} is failing; not called for a while",
            details={"service": self.name, "breaker": "open", "retry_after_s": retry},
        )

    def succeeded(self) -> None:
        """The call reached the service: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def failed(self) -> None:
        """The call failed for want of the service: count it; open at the threshold."""
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self._threshold:
                self._opened_at = self._clock()
            self._probing = False

    def released(self) -> None:
        """The call ended without a verdict on the service (e.g. it was cancelled)."""
        with self._lock:
            self._probing = False

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` through the breaker, within ``timeout_s``.

        Raises:
            ServiceUnavailableError: the breaker is open, the call timed out, or the
                call raised it (the service is down or restarting).
        """
        self.before()
        try:
            # In the caller's task: wait_for would wrap the call in a task of its own,
            # a measurable share of a predict request's time (docs/benchmarks.md).
            async with asyncio.timeout(self.timeout_s):
                result = await make()
        except TimeoutError:
            self.failed()
            raise ServiceUnavailableError(
                f"{self.name} did not answer within {self.timeout_s}s",
                details={"service": self.name, "timeout_s": self.timeout_s, "retry_after_s": 1},
            ) from None
        except ServiceUnavailableError:
            self.failed()
            raise
        except Exception:
            self.succeeded()  # the service answered: a denial, a missing model...
            raise
        except BaseException:
            self.released()  # cancelled: no verdict on the service
            raise
        self.succeeded()
        return result

    def call_sync(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` through the breaker; ``fn`` bounds its own time (``timeout_s``).

        Raises:
            ServiceUnavailableError: the breaker is open, or ``fn`` raised it.
        """
        self.before()
        try:
            result = fn()
        except ServiceUnavailableError:
            self.failed()
            raise
        except Exception:
            self.succeeded()
            raise
        except BaseException:
            self.released()
            raise
        self.succeeded()
        return result


class Breakers:
    """One replica's breakers: governance, the online store, the model registry.

    Args:
        failures: Failures in a row that open a breaker.
        open_s: How long an open breaker refuses before a probe.
        governance_timeout_s: Bound on one governance call.
        online_read_timeout_s: Bound on one online feature read.
        registry_timeout_s: Bound on one registry call.
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        open_s: float = 5.0,
        governance_timeout_s: float = 5.0,
        online_read_timeout_s: float = 3.0,
        registry_timeout_s: float = 5.0,
    ) -> None:
        self.governance = CircuitBreaker(
            "governance", failures=failures, open_s=open_s, timeout_s=governance_timeout_s
        )
        self.online_store = CircuitBreaker(
            "online_store", failures=failures, open_s=open_s, timeout_s=online_read_timeout_s
        )
        self.registry = CircuitBreaker(
            "registry", failures=failures, open_s=open_s, timeout_s=registry_timeout_s
        )

    @classmethod
    def from_settings(cls, settings: EntaiSettings) -> Breakers:
        """The breakers ``settings.serve`` and ``settings.security.auth_guard`` describe."""
        serve = settings.serve
        return cls(
            failures=serve.breaker_failures,
            open_s=serve.breaker_open_s,
            governance_timeout_s=settings.security.auth_guard.governance_timeout_s,
            online_read_timeout_s=serve.online_read_timeout_s,
            registry_timeout_s=serve.registry_timeout_s,
        )

    def states(self) -> dict[str, str]:
        """Each breaker's state, by dependency."""
        return {b.name: str(b.state) for b in (self.governance, self.online_store, self.registry)}
