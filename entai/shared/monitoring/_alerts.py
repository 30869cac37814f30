"""The drift alert state machine: OK -> WARN -> ALERT with hysteresis and cooldown.

One state per :class:`AlertKey` (model, feature, method), so the same drift is never
reported twice under different names. Each observed window is drifted or not:

- **up** at once: ``alert_k`` drifted windows among the last ``n`` -> ALERT, else
  ``warn_k`` of them -> WARN;
- **down** only after ``clear_k`` consecutive non-drifted windows (hysteresis), and then
  to the level the last ``n`` windows imply;
- a window id already seen for the key is ignored (a retried window counts once).

Every level change is returned as an :class:`AlertTransition`. Only upward transitions
may ``notify``, and they do not when the key is silenced, when its current episode was
acknowledged at that level or above, or when the key notified within ``cooldown_s``
at the same or a higher level (an escalation always notifies). Returning to OK ends the
episode and clears the acknowledgement. Windows with ``INSUFFICIENT_DATA`` should not be
observed at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from entai.shared.core import ConfigError, ConflictError, InvalidInputError

__all__ = [
    "AlertKey",
    "AlertLevel",
    "AlertPolicy",
    "AlertState",
    "AlertStateMachine",
    "AlertTransition",
]

logger = logging.getLogger(__name__)


class AlertLevel(StrEnum):
    """Severity of a key's drift."""

    OK = "ok"
    WARN = "warn"
    ALERT = "alert"


_RANK = {AlertLevel.OK: 0, AlertLevel.WARN: 1, AlertLevel.ALERT: 2}


class AlertKey(NamedTuple):
    """What an alert is about; the unit of deduplication."""

    model: str
    feature: str
    method: str


@dataclass(frozen=True)
class AlertPolicy:
    """Hysteresis and cooldown settings.

    Attributes:
        warn_k: Drifted windows among the last ``n`` that raise WARN.
        alert_k: Drifted windows among the last ``n`` that raise ALERT.
        n: Length of the sliding window of observations.
        clear_k: Consecutive non-drifted windows needed before stepping down.
        cooldown_s: No repeated notification for a key within this many seconds.
        remembered_windows: Window ids kept per key for idempotency.
    """

    warn_k: int = 1
    alert_k: int = 2
    n: int = 3
    clear_k: int = 3
    cooldown_s: float = 3600.0
    remembered_windows: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.warn_k <= self.alert_k <= self.n:
            raise ConfigError(
                f"alert policy needs 1 <= warn_k <= alert_k <= n, got "
                f"warn_k={self.warn_k}, alert_k={self.alert_k}, n={self.n}",
                details={"fields": ["warn_k", "alert_k", "n"]},
            )
        if self.clear_k < 1 or self.cooldown_s < 0 or self.remembered_windows < 1:
            raise ConfigError(
                "alert policy needs clear_k >= 1, cooldown_s >= 0, remembered_windows >= 1",
                details={"fields": ["clear_k", "cooldown_s", "remembered_windows"]},
            )


@dataclass(frozen=True)
class AlertState:
    """One key's state (immutable snapshot)."""

    level: AlertLevel = AlertLevel.OK
    recent: tuple[bool, ...] = ()
    clear_streak: int = 0
    window_ids: tuple[str, ...] = ()
    last_notified_at: datetime | None = None
    last_notified_level: AlertLevel | None = None
    acknowledged_by: str | None = None
    acknowledged_level: AlertLevel | None = None
    silenced_until: datetime | None = None


@dataclass(frozen=True)
class AlertTransition:
    """A level change of one key, and whether to tell anyone."""

    key: AlertKey
    window_id: str
    previous: AlertLevel
    level: AlertLevel
    at: datetime
    notify: bool
    drifted_windows: int


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError(f"{name} must be timezone-aware", details={"field": name})
    return at


class AlertStateMachine:
    """Alert states of many keys under one policy; checkpoint with :meth:`to_dict`.

    Args:
        policy: Hysteresis and cooldown; defaults to :class:`AlertPolicy`.
    """

    def __init__(self, policy: AlertPolicy | None = None) -> None:
        self.policy = policy or AlertPolicy()
        self._states: dict[AlertKey, AlertState] = {}

    def __repr__(self) -> str:
        return f"AlertStateMachine(policy={self.policy!r}, keys={len(self._states)})"

    def state(self, key: AlertKey) -> AlertState:
        """The key's state; OK with no history for a key never observed."""
        return self._states.get(AlertKey(*key), AlertState())

    def observe(
        self, key: AlertKey, window_id: str, drifted: bool, at: datetime
    ) -> AlertTransition | None:
        """Record one window's verdict for a key.

        Returns:
            The level change, or None when the level stays (or the window was seen).
        """
        key, at = AlertKey(*key), _aware(at, "at")
        old = self.state(key)
        if window_id in old.window_ids:
            logger.debug("window already observed", extra={"window_id": window_id})
            return None
        policy = self.policy
        recent = (*old.recent, drifted)[-policy.n :]
        clear_streak = 0 if drifted else old.clear_streak + 1
        count = sum(recent)
        target = (
            AlertLevel.ALERT
            if count >= policy.alert_k
            else AlertLevel.WARN
            if count >= policy.warn_k
            else AlertLevel.OK
        )
        going_up = _RANK[target] > _RANK[old.level]
        going_down = _RANK[target] < _RANK[old.level] and clear_streak >= policy.clear_k
        level = target if going_up or going_down else old.level
        new = replace(
            old,
            level=level,
            recent=recent,
            clear_streak=clear_streak,
            window_ids=(*old.window_ids, window_id)[-policy.remembered_windows :],
        )
        if level is old.level:
            self._states[key] = new
            return None
        notify = going_up and self._may_notify(old, level, at)
        if notify:
            new = replace(new, last_notified_at=at, last_notified_level=level)
        if level is AlertLevel.OK:
            new = replace(new, acknowledged_by=None, acknowledged_level=None)
        self._states[key] = new
        transition = AlertTransition(key, window_id, old.level, level, at, notify, count)
        logger.info(
            "drift alert level changed",
            extra={"key": list(key), "previous": str(old.level), "level": str(level)},
        )
        return transition

    def _may_notify(self, old: AlertState, level: AlertLevel, at: datetime) -> bool:
        if old.silenced_until is not None and at < old.silenced_until:
            return False
        if old.acknowledged_level is not None and _RANK[level] <= _RANK[old.acknowledged_level]:
            return False
        if old.last_notified_at is None or old.last_notified_level is None:
            return True
        cooled = at - old.last_notified_at >= timedelta(seconds=self.policy.cooldown_s)
        return cooled or _RANK[level] > _RANK[old.last_notified_level]

    def acknowledge(self, key: AlertKey, by: str) -> None:
        """Acknowledge the key's current episode: no notifications at this level or below.

        Raises:
            ConflictError: when the key is OK (nothing to acknowledge).
        """
        key = AlertKey(*key)
        old = self.state(key)
        if old.level is AlertLevel.OK:
            raise ConflictError(
                f"alert {list(key)} is OK; nothing to acknowledge", details={"key": list(key)}
            )
        self._states[key] = replace(old, acknowledged_by=by, acknowledged_level=old.level)
        logger.info("drift alert acknowledged", extra={"key": list(key), "by": by})

    def silence(self, key: AlertKey, until: datetime) -> None:
        """Send no notification for the key before ``until`` (levels still change)."""
        key = AlertKey(*key)
        self._states[key] = replace(self.state(key), silenced_until=_aware(until, "until"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able checkpoint of the policy and every key's state."""
        return {
            "policy": asdict(self.policy),
            "states": [
                {"key": list(key), **_state_to_dict(state)} for key, state in self._states.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertStateMachine:
        """Restore a machine checkpointed by :meth:`to_dict`."""
        try:
            machine = cls(AlertPolicy(**data["policy"]))
            for item in data["states"]:
                machine._states[AlertKey(*item["key"])] = _state_from_dict(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"alert checkpoint is malformed: {exc!r}", details={"field": "checkpoint"}
            ) from exc
        return machine


def _state_to_dict(state: AlertState) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    def name(value: AlertLevel | None) -> str | None:
        return str(value) if value is not None else None

    return {
        "level": str(state.level),
        "recent": list(state.recent),
        "clear_streak": state.clear_streak,
        "window_ids": list(state.window_ids),
        "last_notified_at": when(state.last_notified_at),
        "last_notified_level": name(state.last_notified_level),
        "acknowledged_by": state.acknowledged_by,
        "acknowledged_level": name(state.acknowledged_level),
        "silenced_until": when(state.silenced_until),
    }


def _state_from_dict(data: Mapping[str, Any]) -> AlertState:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value is not None else None

    def level(value: str | None) -> AlertLevel | None:
        return AlertLevel(value) if value is not None else None

    return AlertState(
        level=AlertLevel(data["level"]),
        recent=tuple(bool(x) for x in data["recent"]),
        clear_streak=int(data["clear_streak"]),
        window_ids=tuple(str(x) for x in data["window_ids"]),
        last_notified_at=when(data["last_notified_at"]),
        last_notified_level=level(data["last_notified_level"]),
        acknowledged_by=data["acknowledged_by"],
        acknowledged_level=level(data["acknowledged_level"]),
        silenced_until=when(data["silenced_until"]),
    )
