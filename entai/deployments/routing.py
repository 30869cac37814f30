"""Traffic assignment for canary releases: a stable hash of the entity key.

Pure functions, no Ray: the ingress calls them, unit tests pin them. An entity is
assigned to the canary when its hash bucket (0 <= b < 10,000) is below the canary
percentage times 100, so the same entity always lands on the same side for a given
percentage, and raising the percentage only moves entities towards the canary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from entai.shared.core import InvalidInputError

__all__ = ["BUCKETS", "canary_mask", "route_aliases"]

BUCKETS = 10_000
_SALT = b"entai-canary-v1"


def _buckets(entity_keys: Sequence[str]) -> np.ndarray:
    digests = b"".join(
        hashlib.blake2b(key.encode(), digest_size=8, key=_SALT).digest() for key in entity_keys
    )
    return np.frombuffer(digests, dtype=">u8") % BUCKETS


def canary_mask(entity_keys: Sequence[str], percent: float) -> np.ndarray:
    """Which entities go to the canary, as a boolean array in input order.

    Args:
        entity_keys: Canonical entity keys (``entai.shared.features._online.entity_key``).
        percent: Share of entities sent to the canary, 0 to 100.

    Raises:
        InvalidInputError: ``percent`` is outside 0..100.
    """
    if not 0.0 <= percent <= 100.0:
        raise InvalidInputError(
            f"canary percent must be within 0..100, got {percent}",
            details={"field": "canary_percent", "value": percent},
        )
    if percent == 0.0 or not entity_keys:
        return np.zeros(len(entity_keys), dtype=bool)
    return np.asarray(_buckets(entity_keys) < round(percent * BUCKETS / 100.0))


def route_aliases(
    entity_keys: Sequence[str], percent: float, *, canary: str = "challenger"
) -> list[str]:
    """The alias that answers for each entity: ``canary`` or ``champion``."""
    if percent == 0.0:  # no canary (the usual case): nothing to hash
        return ["champion"] * len(entity_keys)
    mask = canary_mask(entity_keys, percent)
    return np.where(mask, canary, "champion").tolist()  # type: ignore[no-any-return]
