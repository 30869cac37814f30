"""CircuitBreaker: open after N failures in a row, refuse fast, probe, close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from entai.deployments.circuit_breaker import Breakers, BreakerState, CircuitBreaker
from entai.shared.core import NotFoundError, ServiceUnavailableError
from entai.shared.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def down() -> Any:
    raise ServiceUnavailableError("redis is not answering")


def test_it_opens_after_n_failures_in_a_row_and_refuses_without_calling() -> None:
    clock = Clock()
    breaker = CircuitBreaker("online_store", failures=3, open_s=5.0, clock=clock)
    calls = []

    def failing() -> Any:
        calls.append(1)
        return down()

    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            breaker.call_sync(failing)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.call_sync(lambda: "ok") == "ok"  # a success resets the count
    for _ in range(3):
        with pytest.raises(ServiceUnavailableError):
            breaker.call_sync(failing)
    assert breaker.state == BreakerState.OPEN
    assert len(calls) == 5
    clock.now = 1.2
    with pytest.raises(ServiceUnavailableError) as refused:
        breaker.call_sync(failing)
    assert len(calls) == 5  # refused without a call
    assert refused.value.details == {
        "service": "online_store",
        "breaker": "open",
        "retry_after_s": 4,
    }


def test_after_open_s_one_probe_goes_through_and_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker("registry", failures=1, open_s=5.0, clock=clock)
    with pytest.raises(ServiceUnavailableError):
        breaker.call_sync(down)
    clock.now = 5.0
    assert breaker.state == BreakerState.HALF_OPEN
    breaker.before()  # the probe is admitted...
    with pytest.raises(ServiceUnavailableError):
        breaker.before()  # ...and nobody else while it runs
    breaker.failed()  # the probe failed: open again, for another open_s
    assert breaker.state == BreakerState.OPEN
    clock.now = 10.0
    assert breaker.call_sync(lambda: 42) == 42  # the next probe succeeds: closed
    assert breaker.state == BreakerState.CLOSED


def test_an_answer_from_the_service_is_not_a_failure() -> None:
    breaker = CircuitBreaker("registry", failures=1, clock=Clock())

    def missing() -> Any:
        raise NotFoundError("no model 'x'")

    for _ in range(3):
        with pytest.raises(NotFoundError):
            breaker.call_sync(missing)
    assert breaker.state == BreakerState.CLOSED


def test_a_call_that_outlasts_its_timeout_is_503_and_counts() -> None:
    breaker = CircuitBreaker("governance", failures=2, timeout_s=0.01, clock=Clock())

    async def hangs() -> None:
        await asyncio.Event().wait()

    for _ in range(2):
        with pytest.raises(ServiceUnavailableError, match="did not answer within"):
            asyncio.run(breaker.call(hangs))
    assert breaker.state == BreakerState.OPEN


def test_the_replica_breakers_come_from_the_settings() -> None:
    settings = load_settings(
        serve={"breaker_failures": 2, "breaker_open_s": 9, "online_read_timeout_s": 1.5},
        security={"auth_guard": {"governance_timeout_s": 2.5}},
    )
    breakers = Breakers.from_settings(settings)
    assert breakers.online_store.timeout_s == 1.5
    assert breakers.governance.timeout_s == 2.5
    assert breakers.states() == {
        "governance": "closed",
        "online_store": "closed",
        "registry": "closed",
    }


def test_a_cancelled_probe_frees_the_probe_slot_without_a_verdict() -> None:
    """The caller cancelled (the client left): no failure counted, the next probe may go."""
    clock = Clock()
    breaker = CircuitBreaker("online_store", failures=1, open_s=5.0, timeout_s=5.0, clock=clock)
    with pytest.raises(ServiceUnavailableError):
        breaker.call_sync(down)
    clock.now = 5.0  # half open: the next call is the probe

    async def cancel_the_probe() -> None:
        started = asyncio.Event()

        async def hangs() -> None:
            started.set()
            await asyncio.Event().wait()

        probe = asyncio.create_task(breaker.call(hangs))
        await started.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

    asyncio.run(cancel_the_probe())
    assert breaker.state == BreakerState.HALF_OPEN  # not opened again by the cancel
    assert breaker.call_sync(lambda: "ok") == "ok"  # and the slot is free for a probe
    assert breaker.state == BreakerState.CLOSED
