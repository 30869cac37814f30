"""The demo's monitoring act: drift that acts (monitor -> alert -> retrain -> challenger).

After the predictions, traffic drawn like the training rows goes through the Serve
app for a few windows: the DriftMonitor (watching the champion against the reference
profile in its lineage) sees no drift. Then the market shifts (:data:`SHIFT`:
electronics prices halved, its popularity x4) over the two weeks that follow the
history, up to today: their events land in the raw lake through the events' contract
(as ``entai ingest`` would), their features, which the views' own transforms compute,
go to the offline and online stores (as the stream consumer does, without a batch
job's fixed cost), and most shoppers now ask about the category. The monitor goes
WARN, then ALERT, and writes a RetrainRequest; the retraining worker rebuilds the
training set with the fresh labels through the same point-in-time path, trains and
registers a ``challenger``. The champion stays until a person promotes the
challenger, unless ``monitoring.retrain.auto_promote`` says otherwise. The demo's
live scenes follow, in the shifted world.

The act runs on whatever platform the demo joined, whose monitoring settings are
the platform's: the champion carries its own policy (:func:`demo_policy`, recorded in
its monitoring reference), so the monitor watches it with small windows anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.actors.services import Services
from entai.demo.generator import CATEGORIES, EcommerceWorld, Shift
from entai.shared.core import ServiceUnavailableError
from entai.shared.data import Lake
from entai.shared.features import compute_view
from entai.shared.settings import EntaiSettings

__all__ = [
    "SHIFT",
    "SHIFT_DAYS",
    "SMALL_WINDOW_DRIFT",
    "ActContext",
    "ActOutcome",
    "demo_policy",
    "run_drift_act",
    "send_rows",
]

SHIFT = Shift(category="electronics", popularity=4.0, price=0.5)
SHIFT_DAYS = 14
"""Days of shifted events; the demo's history ends this many days before today."""
WINDOW_ROWS = 200
STABLE_WINDOWS = 3
MAX_DRIFT_WINDOWS = 4
SHIFTED_SHARE = 0.7  # of the traffic after the shift, about the shifted category
_BATCH = 50
SMALL_WINDOW_DRIFT = {"small_reference_max": 10**9, "ks_p": 0.01, "chi2_p": 0.01, "z_p": 0.01}
"""Drift settings for windows of a few hundred rows (see :func:`demo_policy`)."""
_DATASET = ("*", "dataset")


class Stages(Protocol):
    """Prints a stage with its duration (the demo's stage printer)."""

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Run a block as one named stage."""
        ...


@dataclass
class ActContext:
    """What the act needs from the demo so far.

    Attributes:
        settings: Demo settings.
        url: Base URL of the Serve app.
        token: Bearer token (admin).
        model: Served model name.
        champion: Version serving as champion.
        world: The synthetic world the events came from.
        events: Its events.
        label_rows: Every labelled entity row so far.
        label_file: The champion's recorded label source (retraining reads it).
        workdir: The demo's own directory (the shifted events' file goes there).
        online: The online feature client (materialization writes through it).
    """

    settings: EntaiSettings
    url: str
    token: str
    model: str
    champion: int
    world: EcommerceWorld
    events: pd.DataFrame
    label_rows: pd.DataFrame
    label_file: Path
    workdir: Path
    online: Any


@dataclass(frozen=True)
class ActOutcome:
    """What the act did, and the world it leaves.

    Attributes:
        summary: What the monitor and retraining did (the demo's summary section).
        world: The shifted world, as it is today.
        events: Every event so far: the history, then the shifted weeks.
    """

    summary: dict[str, Any]
    world: EcommerceWorld
    events: pd.DataFrame


def demo_policy() -> dict[str, Any]:
    """The demo champion's own monitoring policy: 200-row count windows, a retrain
    request after 2 drifted windows, no rate limit on requests.

    Windows this small take p-value tests (KS, chi-squared) at p < 0.01 whatever the
    reference size: the distance thresholds of the automatic choice (Wasserstein, JS
    >= 0.1) are meant for large windows, and 200 rows of count features cross them
    by sampling noise alone in about half the windows (measured on the demo's data).
    """
    return {
        "window_count": WINDOW_ROWS,
        "window_seconds": None,
        "drift": dict(SMALL_WINDOW_DRIFT),
        "retrain": {"drift_windows": 2, "min_interval_s": 0.0},
    }


def send_rows(url: str, token: str, model: str, users: np.ndarray, categories: np.ndarray) -> None:
    """Score (user, category) rows over HTTP, ``_BATCH`` rows per request."""
    import httpx

    with httpx.Client(base_url=url, timeout=60.0) as client:
        for start in range(0, len(users), _BATCH):
            body = {
                "entities": {
                    "user_id": users[start : start + _BATCH].tolist(),
                    "category": categories[start : start + _BATCH].tolist(),
                }
            }
            response = client.post(
                f"/v1/predict/{model}", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 200:
                raise ServiceUnavailableError(
                    f"prediction failed with HTTP {response.status_code}: {response.text[:300]}",
                    details={"status": response.status_code},
                )


def _report(ctx: ActContext) -> dict[str, Any] | None:
    import httpx

    response = httpx.get(
        f"{ctx.url}/v1/monitoring/{ctx.model}",
        headers={"Authorization": f"Bearer {ctx.token}"},
        timeout=30.0,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    report: dict[str, Any] = response.json()
    return report


def _wait(what: str, ready: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.5)
    raise ServiceUnavailableError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _windows_of(ctx: ActContext) -> list[dict[str, Any]] | None:
    """Closed windows of the champion, or None while the monitor does not watch it."""
    report = _report(ctx)
    if report is None or report["version"] != ctx.champion:
        return None
    windows: list[dict[str, Any]] = report["windows"]
    return windows


def _windows(ctx: ActContext, at_least: int) -> list[dict[str, Any]]:
    def closed() -> list[dict[str, Any]] | None:
        windows = _windows_of(ctx)
        return windows if windows is not None and len(windows) >= at_least else None

    found: list[dict[str, Any]] = _wait(f"{at_least} closed windows", closed, 90.0)
    return found


def _traffic(ctx: ActContext, n: int, seed: int, shifted_share: float) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, ctx.world.config.n_users, n)
    categories = np.asarray(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)]
    categories[rng.random(n) < shifted_share] = SHIFT.category
    return users, categories


def _dataset_levels(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"window_id": w["window_id"], "level": a["level"]}
        for w in windows
        for a in w["alerts"]
        if (a["feature"], a["method"]) == _DATASET
    ]


def _shift_the_world(ctx: ActContext) -> tuple[EcommerceWorld, pd.DataFrame, dict[str, Any]]:
    """The shifted weeks up to today: raw events -> lake; features -> offline and online;
    fresh labels land. Returns the shifted world, its events and what landed."""
    from entai.demo.contracts import ingest_events
    from entai.demo.features import user_category_stats, user_stats
    from entai.pipelines.features import push

    shifted = ctx.world.shifted(SHIFT, days=SHIFT_DAYS)
    events = shifted.events()
    events_file = ctx.workdir / "shifted_events.parquet"
    events.to_parquet(events_file, index=False)
    ingested = ingest_events(ctx.settings, events_file)
    start = shifted.config.start
    # The views' windows reach 30 days back: that much history, then only new rows.
    history = ctx.events[ctx.events["event_timestamp"] >= start - timedelta(days=30)]
    recent = pd.concat([history, events], ignore_index=True)
    lake = Lake(ctx.settings.lake.root)
    for view in (user_category_stats, user_stats):
        rows = compute_view(view, recent)
        push(view, rows[rows["event_timestamp"] > start], lake=lake, online=ctx.online)
    cutoffs = [start + timedelta(days=d) for d in range(0, SHIFT_DAYS - 6, 2)]
    fresh = shifted.label_rows(events, cutoffs, timedelta(days=7))
    pd.concat([ctx.label_rows, fresh], ignore_index=True).to_parquet(ctx.label_file, index=False)
    landed = {
        "events": len(events),
        "accepted": ingested.rows_accepted,
        "quarantined": ingested.rows_quarantined,
        "fresh_label_rows": len(fresh),
    }
    return shifted, pd.concat([ctx.events, events], ignore_index=True), landed


def _not_retrained(ctx: ActContext) -> str | None:
    """Why the retraining worker closed this act's request without a run, if it did.

    A platform's worker limits runs per model (``monitoring.retrain.min_interval_s``):
    a second demo in the same home within that time gets no challenger, and says why.
    """
    lake = Lake(ctx.settings.lake.root)
    for closed in lake.list_json(lake.path("monitoring", "retrain_requests", "done")):
        request, outcome = closed.get("request", {}), closed.get("outcome", {})
        if request.get("model") != ctx.model or request.get("version") != ctx.champion:
            continue
        why = outcome.get("skipped") or outcome.get("error")
        if why:
            return str(why)
    return None


def _challenger(ctx: ActContext) -> dict[str, Any]:
    registry = Services.of(ctx.settings).registry()

    def registered() -> ModelVersionInfo | str | None:
        why_not = _not_retrained(ctx)
        if why_not is not None:
            return why_not
        aliases = registry.call(ModelRegistry.subscribe, ctx.model)["aliases"]
        if "challenger" not in aliases:
            return None
        info = registry.call(ModelRegistry.version, ctx.model, int(aliases["challenger"]))
        # A challenger left by an earlier run in this home is not this act's.
        return info if info.tags.get("entai.retrained_from") == str(ctx.champion) else None

    info = _wait("the retrained challenger", registered, 240.0)
    champion = registry.call(ModelRegistry.resolve, ctx.model, "champion").version
    if isinstance(info, str):  # the worker closed the request without a run
        return {"skipped": info, "champion_after": champion}
    return {
        "version": info.version,
        "reason": info.tags.get("entai.retrain_reason"),
        "request_id": info.tags.get("entai.retrain_request"),
        "valid_auc": round(info.metrics.get("valid_auc", float("nan")), 4),
        "champion_after": champion,
    }


def run_drift_act(ctx: ActContext, stages: Stages) -> ActOutcome:
    """Stable traffic, then the shift; returns what the monitor and retraining did."""
    rows = WINDOW_ROWS
    with stages.stage(f"monitor stable traffic ({STABLE_WINDOWS} windows of {rows} rows)"):
        _wait("the monitor to watch the champion", lambda: _windows_of(ctx) is not None, 60.0)
        send_rows(ctx.url, ctx.token, ctx.model, *_traffic(ctx, STABLE_WINDOWS * rows, 11, 0.0))
        stable = _windows(ctx, STABLE_WINDOWS)
    with stages.stage(
        f"inject drift: {SHIFT.category} prices x{SHIFT.price}, popularity "
        f"x{SHIFT.popularity} ({SHIFT_DAYS} more days of events up to today, ingested, "
        "features pushed)"
    ):
        world, events, shift = _shift_the_world(ctx)
    with stages.stage("send shifted traffic until the monitor raises ALERT"):
        windows = stable
        for i in range(MAX_DRIFT_WINDOWS):
            users, categories = _traffic(ctx, rows, 100 + i, SHIFTED_SHARE)
            send_rows(ctx.url, ctx.token, ctx.model, users, categories)
            windows = _windows(ctx, len(windows) + 1)
            if any(e["level"] == "alert" for e in _dataset_levels(windows[len(stable) :])):
                break
    drifted = windows[len(stable) :]
    with stages.stage("retrain on fresh labels (same PIT path) and register a challenger"):
        challenger = _challenger(ctx)
    summary = {
        "model": ctx.model,
        "stable": {
            "windows": len(stable),
            "drifted": sum(w["status"] == "drift" for w in stable),
            "levels": sorted({a["level"] for w in stable for a in w["alerts"]}),
        },
        "shift": {"category": SHIFT.category, **shift},
        "drift": {
            "windows": len(drifted),
            "drifted": sum(w["status"] == "drift" for w in drifted),
            "alerts": _dataset_levels(drifted),
            "drifted_share": [round(w["drifted_share"], 2) for w in drifted],
        },
        "challenger": challenger,
    }
    return ActOutcome(summary=summary, world=world, events=events)
