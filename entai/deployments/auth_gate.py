"""A serving replica's authentication gate: who is calling, decided before the body is read.

:class:`AuthGate` answers from what the replica already has, in this order:

1. the replica's copy of the governance state (:class:`~entai.actors.governance.AuthCache`,
   refreshed in the background every ``cache_ttl_s / 2``): a token it knows as active
   passes at once, with no call and nothing spent;
2. any other attempt spends one token of the client's failure budget
   (:class:`~entai.deployments.rate_limit.ClientRateLimiter`, keyed by peer address):
   with none left the answer is 429 with ``Retry-After``, and nothing else happens but
   a wait: the refusal is held ``refusal_delay_s`` before it goes (a tarpit, at most
   ``max_delayed`` held at once, an ``asyncio`` sleep that costs no CPU), so a client
   retrying back to back is slowed to its connections over the delay instead of
   taking the cores from the legitimate clients;
3. a missing or malformed token (not ``entai_<id>_<secret>``), or one in the
   :class:`~entai.deployments.negative_cache.NegativeCache`, is refused (401);
4. anything else is looked up in the governance service's read-only ``lookup_token``
   (its own concurrency group, so never behind audit writes; at most
   ``lookup_concurrency`` at once; concurrent lookups of one token share one call;
   each bounded by ``governance_timeout_s``, past which the answer is 503). A token it
   does not know is remembered in the negative cache; one it knows gives the budget
   token back and wakes the refresher so the next request finds it locally. Lookups,
   refreshes and failure reports go through the replica's governance
   :class:`~entai.deployments.circuit_breaker.CircuitBreaker`: while it is open a
   lookup is 503 at once.

Every failure is counted per client and reason (:class:`AuthFailureTally`) and the
refresher sends the counts to the audit log once per ``failure_window_s``: one entry
per client and window, however many requests failed. When the governance service is
down, the last snapshot keeps authenticating known tokens for ``max_stale_s``.
Authorization (which token may do what) stays with the routes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from entai.actors.governance import AuthCache, AuthFailureTally
from entai.deployments.circuit_breaker import CircuitBreaker
from entai.deployments.negative_cache import NegativeCache, token_digest
from entai.deployments.rate_limit import ClientRateLimiter
from entai.shared.core import (
    AuthenticationError,
    EntaiError,
    RateLimitedError,
    ServiceUnavailableError,
)
from entai.shared.governance import Principal, parse_token
from entai.shared.settings import AuthGuardSettings

__all__ = ["AuthGate", "bearer_token"]

log = logging.getLogger(__name__)

_UNKNOWN_CLIENT = "unknown"


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value.

    Raises:
        AuthenticationError: ``reason`` ``missing`` or ``malformed``.
    """
    if not authorization:
        raise AuthenticationError("missing bearer token", details={"reason": "missing"})
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "Authorization header must be 'Bearer <token>'", details={"reason": "malformed"}
        )
    return token.strip()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuthGate:
    """Authentication of a replica's requests from its cache, with flood limits.

    Args:
        cache: The replica's governance cache (its backend calls need timeouts).
        settings: Limits, TTLs and timeouts.
        breaker: The replica's governance breaker (lookups, refreshes and failure
            reports go through it); a new one when None.
        clock: Monotonic seconds, for the negative cache and the rate limiter.
        wall_clock: UTC time, for the audited failure windows.
        sleep: How a rate-limited refusal is held (``asyncio.sleep``).
    """

    def __init__(
        self,
        cache: AuthCache,
        settings: AuthGuardSettings,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._cache = cache
        self._sleep = sleep
        self._held = 0
        self._settings = settings
        self._breaker = breaker or CircuitBreaker(
            "governance", timeout_s=settings.governance_timeout_s, clock=clock
        )
        self._negative = NegativeCache(
            settings.negative_cache_size, settings.negative_ttl_s, clock=clock
        )
        self._limiter = ClientRateLimiter(
            settings.failure_rate_per_s,
            settings.failure_burst,
            max_clients=settings.max_clients,
            clock=clock,
        )
        self.failures = AuthFailureTally(
            settings.failure_window_s, max_clients=settings.max_clients, clock=wall_clock
        )
        self._lookup_slots = asyncio.Semaphore(settings.lookup_concurrency)
        self._inflight: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path ---------------------------------------------------------------

    async def authenticate(self, authorization: str | None, client: str | None) -> Principal:
        """The principal of the request's bearer token (a 429 held back first, see
        :meth:`_hold`).

        Args:
            authorization: The ``Authorization`` header (or gRPC metadata) value.
            client: The peer's address; None counts as one unknown client.

        Raises:
            AuthenticationError: no token, a malformed one, or one that is not active.
            RateLimitedError: the client has failed too often; retry after
                ``details["retry_after_s"]``.
            ServiceUnavailableError: the token needs a lookup and the governance
                service did not answer in time.
        """
        try:
            return await self._authenticate(authorization, client)
        except RateLimitedError:
            await self._hold()
            raise

    async def _hold(self) -> None:
        """Wait ``refusal_delay_s`` before a 429 goes, unless ``max_delayed`` are
        waiting already (then it goes at once)."""
        delay = self._settings.refusal_delay_s
        if delay <= 0 or self._held >= self._settings.max_delayed:
            return
        self._held += 1
        try:
            await self._sleep(delay)
        finally:
            self._held -= 1

    async def _authenticate(self, authorization: str | None, client: str | None) -> Principal:
        peer = client or _UNKNOWN_CLIENT
        try:
            token = bearer_token(authorization)
        except AuthenticationError as exc:
            self._spend(peer)
            self.failures.add(peer, str(exc.details.get("reason", "malformed")))
            raise
        principal = self._cache.principal_local(token)
        if principal is not None:
            return principal
        self._spend(peer)
        try:
            parse_token(token)
        except AuthenticationError:
            self.failures.add(peer, "malformed")
            raise
        if token in self._negative:
            self.failures.add(peer, "unknown")
            raise _unknown()
        principal = await self._lookup(token)
        if principal is None:
            self._negative.add(token)
            self.failures.add(peer, "unknown")
            raise _unknown()
        self._limiter.refund(peer)
        self._wake.set()  # a token minted since the last refresh: fetch it now
        return principal

    def _spend(self, peer: str) -> None:
        """Spend one of the client's failure budget, or refuse it with 429."""
        wait_s = self._limiter.acquire(peer)
        if wait_s > 0:
            self.failures.add(peer, "rate_limited")
            raise RateLimitedError(
                "too many failed authentications from this client; retry later",
                details={"retry_after_s": max(1, math.ceil(wait_s))},
            )

    async def _lookup(self, token: str) -> Principal | None:
        """One governance lookup per distinct token in flight, shared by its callers."""
        key = token_digest(token)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup_once(token))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    async def _lookup_once(self, token: str) -> Principal | None:
        timeout = self._settings.governance_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._lookup_slots.acquire()
        except TimeoutError:
            raise ServiceUnavailableError(
                "too many token lookups are waiting for the governance service; retry",
                details={"service": "governance", "timeout_s": timeout, "retry_after_s": 1},
            ) from None
        try:
            return await self._breaker.call(lambda: asyncio.to_thread(self._cache.lookup, token))
        finally:
            self._lookup_slots.release()

    # -- the background refresher -------------------------------------------------------

    def start(self) -> None:
        """Take a first snapshot now (raising if governance does not answer), then refresh
        in a daemon thread."""
        self._cache.refresh()
        self._thread = threading.Thread(target=self._run, name="auth-gate", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the refresher thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop refreshing and send the failures counted so far (best effort)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.governance_timeout_s + 1)
        self._send_failures(force=True)

    def refresh_once(self) -> None:
        """One refresher step: a new snapshot, and the failures when their window is due."""
        try:
            self._breaker.call_sync(self._cache.refresh)
        except EntaiError as exc:
            age = self._cache.snapshot_age()
            log.warning(
                "governance refresh failed; deciding from the last snapshot",
                extra={"error": exc.code, "snapshot_age_s": None if age is None else round(age)},
            )
        self._send_failures()

    def _send_failures(self, *, force: bool = False) -> None:
        if not (force or self.failures.due()):
            return
        windows = self.failures.drain()
        if not windows:
            return
        try:
            self._breaker.call_sync(lambda: self._cache.report_failures(windows))
        except EntaiError as exc:
            self.failures.restore(windows)
            log.warning("failed authentications not audited yet", extra={"error": exc.code})

    def _run(self) -> None:
        interval = self._cache.ttl_s / 2
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh_once()
            except Exception as exc:  # noqa: BLE001 - the refresher must outlive any failure
                log.warning("auth refresher step failed", extra={"error": repr(exc)})


def _unknown() -> AuthenticationError:
    return AuthenticationError(
        "token is unknown, expired or revoked", details={"reason": "unknown"}
    )
