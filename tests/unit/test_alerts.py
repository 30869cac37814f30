"""The alert state machine: levels, hysteresis, cooldown, dedup, ack/silence, checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from entai.shared.core import ConfigError, ConflictError, InvalidInputError
from entai.shared.monitoring import (
    AlertKey,
    AlertLevel,
    AlertPolicy,
    AlertStateMachine,
    AlertTransition,
)

KEY = AlertKey("churn", "age", "wasserstein")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Feed:
    """Feeds numbered windows to a machine, one minute apart."""

    def __init__(self, machine: AlertStateMachine, key: AlertKey = KEY) -> None:
        self.machine, self.key, self.i = machine, key, 0

    def __call__(
        self, drifted: bool, *, gap: timedelta = timedelta(minutes=1)
    ) -> AlertTransition | None:
        self.i += 1
        return self.machine.observe(self.key, f"w{self.i}", drifted, T0 + self.i * gap)

    def run(self, pattern: str) -> list[AlertTransition | None]:
        return [self(ch == "D") for ch in pattern]


def _levels(machine: AlertStateMachine, pattern: str) -> str:
    feed = Feed(machine)
    out = []
    for ch in pattern:
        feed(ch == "D")
        out.append(machine.state(KEY).level.value[0].upper())
    return "".join(out)


def test_ok_warn_alert_then_hysteresis_back_to_ok() -> None:
    # D: drifted, C: clear. warn_k=1, alert_k=2 of n=3, clear_k=3.
    assert _levels(AlertStateMachine(), "CDDCCCC") == "OWAAAOO"
    assert _levels(AlertStateMachine(), "DCDCDC") == "WWAAAA"  # flapping does not clear


def test_transitions_report_previous_level_and_notify_upward_only() -> None:
    feed = Feed(AlertStateMachine())
    warn, alert = feed(True), feed(True)
    assert warn is not None and alert is not None
    assert (warn.previous, warn.level, warn.notify) == (AlertLevel.OK, AlertLevel.WARN, True)
    assert (alert.previous, alert.level, alert.notify) == (AlertLevel.WARN, AlertLevel.ALERT, True)
    assert alert.drifted_windows == 2
    assert feed.run("CC") == [None, None]
    cleared = feed(False)
    assert cleared is not None
    assert (cleared.level, cleared.notify) == (AlertLevel.OK, False)


def test_cooldown_suppresses_repeat_notifications_for_the_same_key() -> None:
    feed = Feed(AlertStateMachine(AlertPolicy(cooldown_s=3600)))
    assert feed(True) is not None  # WARN, notified at minute 1
    feed.run("CCC")  # back to OK
    again = feed(True)
    assert again is not None and again.level is AlertLevel.WARN and not again.notify
    feed.run("CCC")
    later = feed(True, gap=timedelta(minutes=61))
    assert later is not None and later.notify


def test_escalation_notifies_even_within_cooldown() -> None:
    feed = Feed(AlertStateMachine(AlertPolicy(cooldown_s=10**6)))
    assert [t.notify for t in feed.run("DD") if t] == [True, True]


def test_keys_are_independent_and_retried_windows_count_once() -> None:
    machine = AlertStateMachine()
    other = AlertKey("churn", "age", "psi")
    assert machine.observe(KEY, "w1", True, T0) is not None
    assert machine.observe(KEY, "w1", True, T0 + timedelta(minutes=1)) is None
    assert machine.state(KEY).level is AlertLevel.WARN  # not ALERT: w1 counted once
    assert machine.state(KEY).recent == (True,)
    assert machine.state(other).level is AlertLevel.OK
    assert machine.observe(other, "w1", True, T0) is not None


def test_acknowledge_mutes_the_level_until_escalation_or_recovery() -> None:
    machine = AlertStateMachine(AlertPolicy(alert_k=3, cooldown_s=0))
    feed = Feed(machine)
    feed(True)
    machine.acknowledge(KEY, by="ana")
    assert machine.state(KEY).acknowledged_by == "ana"
    escalated = feed.run("DD")[-1]
    assert escalated is not None and escalated.level is AlertLevel.ALERT and escalated.notify
    feed.run("CCC")
    assert machine.state(KEY).acknowledged_by is None  # recovery ends the episode
    with pytest.raises(ConflictError):
        machine.acknowledge(KEY, by="ana")


def test_acknowledged_level_does_not_renotify() -> None:
    machine = AlertStateMachine(AlertPolicy(warn_k=1, alert_k=2, n=3, clear_k=1, cooldown_s=0))
    feed = Feed(machine)
    feed.run("DD")
    machine.acknowledge(KEY, by="ana")
    down = feed.run("CC")[-1]  # 1 of the last 3 drifted -> WARN once a window is clear
    assert down is not None and down.level is AlertLevel.WARN
    back_up = feed.run("DD")[-1]
    assert back_up is not None and back_up.level is AlertLevel.ALERT and not back_up.notify
    assert machine.state(KEY).acknowledged_by == "ana"


def test_silence_suppresses_notifications_until_its_end() -> None:
    machine = AlertStateMachine(AlertPolicy(cooldown_s=0))
    machine.silence(KEY, until=T0 + timedelta(minutes=2, seconds=30))
    feed = Feed(machine)
    first, second = feed.run("DD")
    assert first is not None and not first.notify
    assert second is not None and not second.notify
    feed.run("CCC")
    after = feed(True)
    assert after is not None and after.notify


def test_round_trip_through_json_keeps_behaviour() -> None:
    policy = AlertPolicy(cooldown_s=600)
    machine = AlertStateMachine(policy)
    feed = Feed(machine)
    feed.run("DDC")
    machine.acknowledge(KEY, by="ana")
    machine.silence(AlertKey("m", "f", "ks"), until=T0 + timedelta(hours=1))
    restored = AlertStateMachine.from_dict(json.loads(json.dumps(machine.to_dict())))
    assert restored.policy == policy
    assert restored.state(KEY) == machine.state(KEY)
    assert restored.state(AlertKey("m", "f", "ks")) == machine.state(AlertKey("m", "f", "ks"))
    assert restored.observe(KEY, "w3", False, T0) is None  # window ids survive
    resumed = Feed(restored)
    resumed.i = feed.i
    assert resumed.run("CC") == feed.run("CC")
    assert restored.state(KEY).level is AlertLevel.OK
    with pytest.raises(InvalidInputError):
        AlertStateMachine.from_dict({"policy": {}})


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError):
        AlertStateMachine().observe(KEY, "w1", True, datetime(2026, 1, 1))
    with pytest.raises(ConfigError):
        AlertPolicy(warn_k=3, alert_k=2)
    with pytest.raises(ConfigError):
        AlertPolicy(clear_k=0)
