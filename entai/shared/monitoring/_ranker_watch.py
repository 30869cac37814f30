"""One monitored ranker version: its fairness per window and the alerts they drive.

Pure domain state behind the DriftMonitor's ranker path. A ranker is not profiled
like a classifier (its impressions go to the lake's prediction log only); what is
watched per window is its fairness by the item attributes its model card names
(:func:`~entai.shared.monitoring._fairness_windows.ranking_fairness_windows`).

:meth:`RankerWatch.refresh` brings the windows up to date with the log files (the
impressions of this version, and all feedback, so a click that arrives later is
joined to its request's window), reading only the files that are new or changed
since the last refresh (:class:`~entai.shared.monitoring._ranker_logs.RankerLogWindows`;
after a restart, the first refresh reads them all), and observes, for each window
whose end is at least ``grace_s`` past, one verdict per ``(model, <attribute>,
<measure>)`` through the same
:class:`~entai.shared.monitoring._alerts.AlertStateMachine` as drift: the first
computable verdict counts for a window (the machine observes a window id once), so
later refreshes only update the numbers shown. Everything but the rows read
checkpoints to JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from entai.shared.monitoring._alerts import AlertKey, AlertPolicy, AlertStateMachine
from entai.shared.monitoring._fairness_windows import RankingWindowFairness, fairness_verdicts
from entai.shared.monitoring._ranker_logs import RankerLogSource, RankerLogWindows
from entai.shared.monitoring._windows import transition_event, window_id

__all__ = ["RankerWatch"]


class RankerWatch:
    """Fairness monitoring state of one ranker version (see the module docstring).

    Args:
        name: The ranker's registered name.
        config: ``version``, ``fairness`` (a :class:`RankingWindowFairness` dict),
            ``item_groups`` (per attribute, item id -> group), ``window_s``,
            ``grace_s`` and ``alert_policy`` (``AlertPolicy`` fields).
        max_windows: Window results kept (the newest).
    """

    def __init__(self, name: str, config: Mapping[str, Any], *, max_windows: int = 200) -> None:
        self.name = name
        self.config = dict(config)
        self.version = int(config["version"])
        self.fairness = RankingWindowFairness.from_dict(config["fairness"])
        self.item_groups = {
            str(c): {int(i): str(g) for i, g in groups.items()}
            for c, groups in config["item_groups"].items()
        }
        self.window_s = float(config["window_s"])
        self.grace_s = float(config["grace_s"])
        self.max_windows = max_windows
        self.alerts = AlertStateMachine(AlertPolicy(**config.get("alert_policy", {})))
        self.windows: list[dict[str, Any]] = []
        self.refreshed_at: str | None = None
        self.logs = RankerLogWindows(
            self.fairness, self.item_groups, window_s=self.window_s, version=self.version
        )

    def refresh(self, logs: RankerLogSource, now: datetime) -> list[dict[str, Any]]:
        """Bring the windows up to date with the logs; returns the alert level changes.

        Args:
            logs: The ranker's impression log (rows of other versions are left out)
                and its clicks and purchases (request_id, item_id, kind).
            now: The current time (timezone-aware); windows ended ``grace_s`` before
                it are judged.
        """
        windows = [dict(w) for w in self.logs.refresh(logs)]
        events: list[dict[str, Any]] = []
        for window in windows:
            seq = round(window["start_s"] / self.window_s)
            wid = window_id(self.name, self.version, seq)
            closed = window["end_s"] + self.grace_s <= now.timestamp()
            window.update(window_id=wid, closed=closed)
            if not closed:
                continue
            for attribute, measure, crossed in fairness_verdicts(self.fairness, window["fairness"]):
                key = AlertKey(self.name, attribute, measure)
                change = self.alerts.observe(key, wid, crossed, now)
                if change is not None:
                    events.append(transition_event(change, self.version))
        self.windows = windows[-self.max_windows :]
        self.refreshed_at = now.isoformat()
        return events

    def latest_fairness(self) -> dict[str, dict[str, float | None]]:
        """The measures of the newest closed window with any computed, by attribute."""
        for window in reversed(self.windows):
            if not window["closed"]:
                continue
            found = {
                a: dict(r["measures"]) for a, r in window["fairness"].items() if r.get("available")
            }
            if found:
                return found
        return {}

    def report(self) -> dict[str, Any]:
        """JSON-able report: configuration, windows with their fairness, alert states."""
        states = self.alerts.to_dict()["states"]
        return {
            "model": self.name,
            "kind": "ranker",
            "version": self.version,
            "window": {"seconds": self.window_s, "grace_s": self.grace_s},
            "fairness": self.fairness.to_dict(),
            "refreshed_at": self.refreshed_at,
            "windows": self.windows,
            "alerts": [
                {k: s[k] for k in ("key", "level", "acknowledged_by", "silenced_until")}
                for s in states
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able checkpoint."""
        return {
            "name": self.name,
            "config": self.config,
            "alerts": self.alerts.to_dict(),
            "windows": self.windows,
            "refreshed_at": self.refreshed_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, max_windows: int = 200) -> RankerWatch:
        """Restore a watch checkpointed by :meth:`to_dict`."""
        watch = cls(str(data["name"]), data["config"], max_windows=max_windows)
        watch.alerts = AlertStateMachine.from_dict(data["alerts"])
        watch.windows = [dict(w) for w in data["windows"]]
        watch.refreshed_at = data.get("refreshed_at")
        return watch
