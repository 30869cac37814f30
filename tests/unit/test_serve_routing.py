"""Canary routing: stable, sticky per entity, close to the configured share."""

from __future__ import annotations

import numpy as np
import pytest

from entai.deployments.routing import canary_mask, route_aliases
from entai.shared.core import InvalidInputError

KEYS = [f"i:{n}" for n in range(20_000)]


def test_share_is_close_to_the_percentage() -> None:
    for percent in (5.0, 20.0, 50.0):
        share = canary_mask(KEYS, percent).mean()
        assert abs(share - percent / 100) < 0.01


def test_assignment_is_sticky_and_monotone_in_the_percentage() -> None:
    first = canary_mask(KEYS, 20.0)
    assert np.array_equal(first, canary_mask(list(KEYS), 20.0))
    wider = canary_mask(KEYS, 30.0)
    assert not (first & ~wider).any()  # raising the share only adds entities


def test_edges_and_aliases() -> None:
    assert not canary_mask(KEYS[:100], 0.0).any()
    assert canary_mask(KEYS[:100], 100.0).all()
    assert route_aliases(["i:1", "i:2"], 0.0) == ["champion", "champion"]
    assert route_aliases(["i:1"], 100.0) == ["challenger"]
    assert route_aliases([], 20.0) == []
    with pytest.raises(InvalidInputError, match="canary percent"):
        canary_mask(KEYS[:1], 120.0)
