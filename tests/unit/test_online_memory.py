"""Online-store domain: keys, routing, statuses and the in-memory store's rules."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from entai.shared.core import InvalidInputError
from entai.shared.features import (
    FeatureRow,
    FeatureStatus,
    MemoryOnlineStore,
    OnlineStore,
    entity_key,
    rendezvous_shard,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P, N = FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND
NV, OLD = FeatureStatus.NULL_VALUE, FeatureStatus.OUTSIDE_MAX_AGE


def row(key: str, ev: int, cr: int = 0, **values: object) -> FeatureRow:
    return FeatureRow("v", key, values, T0 + timedelta(seconds=ev), T0 + timedelta(seconds=cr))


def test_entity_key_is_typed_sorted_and_canonical() -> None:
    assert entity_key({"user_id": 1}) != entity_key({"user_id": "1"})
    assert entity_key({"user_id": True}) != entity_key({"user_id": 1})
    assert entity_key({"a": 1, "b": "x"}) == entity_key({"b": "x", "a": 1})
    assert entity_key({"user_id": np.int64(7)}) == entity_key({"user_id": 7})
    assert entity_key({"user_id": 7.0}) == entity_key({"user_id": 7})
    assert entity_key({"k": "a|b=c"}) != entity_key({"k": "a", "b": "c"})


def test_entity_key_is_stable_across_processes() -> None:
    code = (
        "from entai.shared.features._online import entity_key as k;print(k({'u': 42, 's': 'é|x'}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == entity_key({"u": 42, "s": "é|x"})
    assert other == 's=s:"\\u00e9|x"|u=i:42'


@pytest.mark.parametrize("bad", [{}, {"u": None}, {"u": float("nan")}, {"u:x": 1}, {"u": [1]}])
def test_entity_key_rejects_bad_input(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        entity_key(bad)


def test_rendezvous_is_stable_balanced_and_moves_only_what_it_must() -> None:
    keys = [entity_key({"u": i}) for i in range(4000)]
    four = [f"s{i}" for i in range(4)]
    five = [*four, "s4"]
    before = {k: rendezvous_shard(k, four) for k in keys}
    after = {k: rendezvous_shard(k, five) for k in keys}
    counts = Counter(before.values())
    assert min(counts.values()) > 800
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "s4" for k in moved)
    assert 600 < len(moved) < 1000
    assert rendezvous_shard(keys[0], list(reversed(four))) == before[keys[0]]
    with pytest.raises(InvalidInputError):
        rendezvous_shard("k", [])


def test_feature_row_requires_aware_timestamps_and_normalises_to_utc() -> None:
    with pytest.raises(InvalidInputError, match="event_ts"):
        FeatureRow("v", "k", {}, datetime(2026, 1, 1), T0)
    plus2 = timezone(timedelta(hours=2))
    r = FeatureRow("v", "k", {}, datetime(2026, 1, 1, 2, tzinfo=plus2), T0)
    assert r.event_ts == T0 and r.event_ts.tzinfo is UTC
    with pytest.raises(InvalidInputError, match="view"):
        FeatureRow("a:b", "k", {}, T0, T0)
    with pytest.raises(InvalidInputError, match="feature names"):
        FeatureRow("v", "k", {"@e": 1}, T0, T0)


def test_memory_store_satisfies_protocol() -> None:
    assert isinstance(MemoryOnlineStore(), OnlineStore)


def test_last_write_wins_in_any_order() -> None:
    rows = [row("k", ev, cr, x=ev * 10 + cr) for ev in range(5) for cr in range(3)]
    for seed in range(5):
        store = MemoryOnlineStore()
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        for r in shuffled:
            store.write([r])
        res = store.read("v", ["k"], ["x"], ttl=None, now=T0)
        assert res.values == [[42]]


def test_equal_version_keeps_stored_row() -> None:
    store = MemoryOnlineStore()
    assert store.write([row("k", 1, 1, x=1)]) == 1
    assert store.write([row("k", 1, 1, x=2)]) == 0
    assert store.write([row("k", 1, 0, x=3)]) == 0
    assert store.read("v", ["k"], ["x"], ttl=None, now=T0).values == [[1]]


def test_statuses_and_inclusive_ttl_boundary() -> None:
    store = MemoryOnlineStore()
    store.write([row("a", 0, x=1.5, y=None), row("b", -10, x=2.0, y="s")])
    now = T0 + timedelta(seconds=5)
    res = store.read("v", ["a", "b", "zz"], ["x", "y", "nope"], ttl=timedelta(seconds=5), now=now)
    # a: age == ttl (still PRESENT); b: older than ttl; zz: never written
    assert res.statuses == [[P, OLD, N], [NV, OLD, N], [N, OLD, N]]
    assert res.values == [[1.5, None, None], [None, None, None], [None, None, None]]
    assert res.event_timestamps == [T0, T0 - timedelta(seconds=10), None]
    just_past = store.read(
        "v", ["a"], ["x"], ttl=timedelta(seconds=5), now=now + timedelta(microseconds=1)
    )
    assert just_past.statuses == [[OLD]]
    assert store.read("v", ["b"], ["y"], ttl=None, now=now).values == [["s"]]


def test_write_replaces_whole_row() -> None:
    store = MemoryOnlineStore()
    store.write([row("k", 1, x=1, y=2)])
    store.write([row("k", 2, x=3)])
    res = store.read("v", ["k"], ["x", "y"], ttl=None, now=T0)
    assert res.values == [[3], [None]]
    assert res.statuses[1] == [FeatureStatus.NOT_FOUND]


def test_delete_and_scan() -> None:
    store = MemoryOnlineStore()
    store.write([row("a", 1, x=1), row("b", 1, x=2), FeatureRow("w", "a", {"z": 1}, T0, T0)])
    assert {(r.view, r.entity_key) for r in store.scan()} == {("v", "a"), ("v", "b"), ("w", "a")}
    assert [r.entity_key for r in store.scan("w")] == ["a"]
    assert store.delete(None, ["a"]) == 2
    assert store.delete("v", ["a", "b", "b"]) == 1
    assert list(store.scan()) == []
    assert store.read("v", [], ["x"], ttl=None, now=T0).values == [[]]


def test_tombstones_cover_a_key_and_its_composites_until_they_expire() -> None:
    from entai.shared.features import TombstoneMap, tombstone_id, tombstoned

    day = timedelta(days=1)
    tombstones = TombstoneMap()
    assert tombstones.add(["user_id=i:3", "user_id=i:3"], T0, 7 * day, now=T0) == 1
    assert tombstones.add(["user_id=i:9"], T0 - 8 * day, 7 * day, now=T0) == 0  # over
    live = tombstones.live(T0 + day)
    assert live == {tombstone_id("user_id=i:3"): T0}
    assert "user_id=i:3" not in str(live)  # named by digest
    assert tombstoned("user_id=i:3", T0, live)  # dated at the erasure
    assert tombstoned('category=s:"b"|user_id=i:3', T0 - day, live)
    assert not tombstoned("user_id=i:3", T0 + timedelta(microseconds=1), live)
    assert not tombstoned("user_id=i:33", T0 - day, live)
    assert tombstones.live(T0 + 7 * day) == {}
    tombstones.expire(T0 + 7 * day)
    assert len(tombstones) == 0


def test_restored_tombstones_drop_late_writes_like_the_originals() -> None:
    from entai.shared.features import tombstone_id

    now = datetime.now(UTC)
    erased_at, day = now - timedelta(hours=1), timedelta(days=1)
    store = MemoryOnlineStore()  # a restarted shard: no rows, no tombstones
    ids = [tombstone_id("user_id=i:3"), tombstone_id("user_id=i:3")]
    assert store.restore_tombstones(ids, erased_at, erased_at + day) == 1
    assert store.restore_tombstones([tombstone_id("user_id=i:9")], now - 2 * day, now - day) == 0
    late = erased_at - timedelta(seconds=1)
    rows = [
        FeatureRow("v", key, {"x": 1.0}, late, late)
        for key in ("user_id=i:3", 'category=s:"b"|user_id=i:3', "user_id=i:9")
    ]
    assert store.write(rows) == 1
    assert store.tombstoned_writes == 2
    assert [r.entity_key for r in store.scan()] == ["user_id=i:9"]
    after = FeatureRow("v", "user_id=i:3", {"x": 2.0}, now, now)
    assert store.write([after]) == 1  # activity after the erasure lands
