"""The ranker's cutoffs and their split in time (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from entai.demo.generator import EcommerceWorld, WorldConfig
from entai.pipelines.training import RankerConfig, split_examples
from entai.shared.core import InvalidInputError

START = datetime(2026, 9, 1, tzinfo=UTC)


def test_cutoffs_leave_a_full_horizon_and_split_in_order() -> None:
    config = RankerConfig(first_cutoff_day=14, cutoff_every_days=4, horizon=timedelta(days=7))
    cutoffs = config.cutoffs(START, START + timedelta(days=60))
    assert [(c - START).days for c in cutoffs] == [14, 18, 22, 26, 30, 34, 38, 42, 46, 50]
    valid_from, held_from = config.split(cutoffs)
    # a quarter of 10 cutoffs, rounded to even: 46 and 50 held out; a quarter of the
    # 8 left validate: 38 and 42
    assert ((valid_from - START).days, (held_from - START).days) == (38, 46)
    three = config.split(cutoffs[:3])
    assert three == (cutoffs[1], cutoffs[2])


def test_split_examples_keeps_periods_apart_and_needs_three_cutoffs() -> None:
    world = EcommerceWorld(WorldConfig(n_users=120, n_products=40, days=40, seed=3))
    events, catalogue = world.events(), world.products()
    end = START + timedelta(days=40)
    config = RankerConfig(users_per_cutoff=20, cutoff_every_days=5)
    train, valid, held, dataset_id = split_examples(
        events, catalogue, start=START, end=end, config=config
    )
    assert train.rows["event_timestamp"].max() < valid.rows["event_timestamp"].min()
    assert valid.rows["event_timestamp"].max() < held.rows["event_timestamp"].min()
    assert dataset_id.startswith("ranking-")
    again = split_examples(events, catalogue, start=START, end=end, config=config)
    assert again[3] == dataset_id
    with pytest.raises(InvalidInputError, match="at least 3"):
        split_examples(
            events, catalogue, start=START, end=START + timedelta(days=25), config=config
        )
