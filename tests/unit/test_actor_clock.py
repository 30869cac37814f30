"""ActorClock: beats on a timer, survives a failing beat, stops cleanly."""

from __future__ import annotations

import threading

import pytest

from entai.actors.core import ActorClock


def test_beats_repeat_survive_failures_and_stop() -> None:
    calls: list[int] = []
    enough = threading.Event()

    def beat() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("a failing beat")
        if len(calls) >= 4:
            enough.set()

    clock = ActorClock(beat, 0.01, name="test-clock").start()
    assert enough.wait(10.0), "the clock stopped beating"
    clock.stop()
    assert not clock.running  # stop() joined the thread: no beat can follow
    assert clock.failures == 1
    assert clock.beats == len(calls) - 1


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        ActorClock(lambda: None, 0.0, name="bad")
