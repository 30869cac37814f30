"""A replica's kept Redis reads: what may be kept, what drops a copy, when nothing answers.

The listener and Redis are stood in for: ``_go_live`` is what the listener calls once
subscribed (with the probe of its socket), ``invalidate`` what it calls for a message.
The real server's side is in ``tests/integration/test_redis_kept_reads.py``.
"""

from __future__ import annotations

import pytest

from entai.actors.backends._redis_row_cache import TrackedRows

FIELDS = ("@e", "a")
REPLY = [b"1", b"10"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_rows(
    max_rows: int = 10, waiting: list[bool] | None = None, clock: Clock | None = None
) -> TrackedRows:
    rows = TrackedRows("p", max_rows, 30.0, clock=clock or Clock())
    flag = waiting if waiting is not None else [False]
    rows._go_live(42, lambda: flag[0])
    return rows


def read(rows: TrackedRows, key: str, reply: list[bytes]) -> None:
    """One read through the cache: begin, then finish with ``reply``."""
    generation = rows.begin([key])
    rows.finish([(key, FIELDS)], [reply], generation)


def test_a_read_is_kept_and_answers_the_same_fields_only() -> None:
    rows = live_rows()
    read(rows, "p:v:1", REPLY)
    assert rows.answering()
    assert rows.lookup("p:v:1", FIELDS) == REPLY
    assert rows.lookup("p:v:1", ("@e", "b")) is None  # other features: read Redis


def test_an_invalidation_during_the_read_keeps_nothing() -> None:
    # The write's invalidation came on the listener before the read's reply did.
    rows = live_rows()
    generation = rows.begin(["p:v:1"])
    rows.invalidate([b"p:v:1"])
    rows.finish([("p:v:1", FIELDS)], [REPLY], generation)
    assert rows.lookup("p:v:1", FIELDS) is None
    read(rows, "p:v:1", REPLY)  # the next read is kept again
    assert rows.lookup("p:v:1", FIELDS) == REPLY


def test_an_invalidation_drops_the_copy_and_a_flush_drops_them_all() -> None:
    rows = live_rows()
    for key in ("p:v:1", "p:v:2", "p:v:3"):
        read(rows, key, REPLY)
    rows.invalidate([b"p:v:1"])
    assert rows.lookup("p:v:1", FIELDS) is None
    assert rows.lookup("p:v:2", FIELDS) == REPLY
    generation = rows.begin(["p:v:4"])
    rows.invalidate(None)  # FLUSHDB / FLUSHALL
    assert len(rows) == 0
    rows.finish([("p:v:4", FIELDS)], [REPLY], generation)
    assert rows.lookup("p:v:4", FIELDS) is None  # in flight across the flush


def test_a_new_listener_clears_the_copies_and_what_was_begun_before_it() -> None:
    rows = live_rows()
    read(rows, "p:v:1", REPLY)
    generation = rows.begin(["p:v:2"])
    rows._go_dark()  # the listener's connection failed
    assert not rows.answering()
    rows._go_live(43, lambda: False)
    rows.finish([("p:v:2", FIELDS)], [REPLY], generation)
    assert len(rows) == 0  # nothing from before, nothing begun before
    read(rows, "p:v:3", REPLY)
    assert rows.lookup("p:v:3", FIELDS) == REPLY


def test_nothing_answers_without_a_listener_or_with_bytes_waiting_on_it() -> None:
    rows = TrackedRows("p", 10, 30.0)
    assert not rows.answering()
    waiting = [False]
    rows = live_rows(waiting=waiting)
    read(rows, "p:v:1", REPLY)
    assert rows.answering()
    waiting[0] = True  # an invalidation not yet applied
    assert not rows.answering()


def test_copies_are_bounded_in_age_and_number() -> None:
    clock = Clock()
    rows = live_rows(max_rows=2, clock=clock)
    read(rows, "p:v:1", REPLY)
    read(rows, "p:v:2", REPLY)
    assert rows.lookup("p:v:1", FIELDS) == REPLY  # now the most recently used
    read(rows, "p:v:3", REPLY)
    assert rows.lookup("p:v:2", FIELDS) is None  # the least recently used went
    assert rows.lookup("p:v:1", FIELDS) == REPLY
    clock.now += 30.5
    assert rows.lookup("p:v:1", FIELDS) is None  # older than max_age_s
    assert len(rows) == 1


def test_a_failed_read_keeps_nothing_and_ends_its_flight() -> None:
    rows = live_rows()
    generation = rows.begin(["p:v:1", "p:v:1"])
    rows.finish([("p:v:1", FIELDS), ("p:v:1", FIELDS)], None, generation)
    assert rows._in_flight == {}
    assert len(rows) == 0


def test_a_reply_of_none_keeps_nothing_for_its_key_only() -> None:
    rows = live_rows()
    generation = rows.begin(["p:v:1", "p:v:2"])
    rows.finish([("p:v:1", FIELDS), ("p:v:2", FIELDS)], [None, REPLY], generation)
    assert rows._in_flight == {}
    assert rows.lookup("p:v:1", FIELDS) is None  # the store said: do not keep it
    assert rows.lookup("p:v:2", FIELDS) == REPLY


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        TrackedRows("p", 0, 30.0)
