"""A serving replica's memory of tokens that failed: bounded, short-lived, hashed.

A token the governance service called unknown (or revoked, or expired) is refused
again from here, without another lookup, for ``ttl_s``. Entries are keyed by the
SHA-256 of the whole token, so the cache never holds a presented secret; the oldest
entry goes when ``max_size`` is reached, so a flood of distinct bad tokens costs
bounded memory. A real token cannot be in it: tokens are random and only ever
presented after they were minted, and one revoked or expired stays refused.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["NegativeCache", "token_digest"]


def token_digest(token: str) -> bytes:
    """The key a token is remembered under (SHA-256 of its text)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class NegativeCache:
    """Tokens known to be bad, each for ``ttl_s``, at most ``max_size`` of them.

    Args:
        max_size: Entries kept; adding one more drops the oldest.
        ttl_s: How long an entry refuses its token.
        clock: Monotonic seconds (injectable for tests).
    """

    def __init__(
        self, max_size: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_size = max_size
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, token: str) -> None:
        """Remember ``token`` as bad for ``ttl_s`` from now."""
        key = token_digest(token)
        expires = self._clock() + self._ttl_s
        with self._lock:
            self._expiry[key] = expires
            self._expiry.move_to_end(key)
            while len(self._expiry) > self._max_size:
                self._expiry.popitem(last=False)

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` is remembered as bad (an expired entry is dropped)."""
        if not isinstance(token, str):
            return False
        key = token_digest(token)
        now = self._clock()
        with self._lock:
            expires = self._expiry.get(key)
            if expires is None:
                return False
            if now >= expires:
                del self._expiry[key]
                return False
            return True
