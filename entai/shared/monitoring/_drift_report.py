"""A drift monitor report as rows a person reads: the content of ``entai monitor report``.

:func:`summarize` turns the JSON of ``DriftMonitor.report(model)`` (see
``ModelWatch.report``) into a :class:`ReportSummary`: a header
(model, version, last closed window, dataset and prediction drift, realised and
estimated quality) and one :class:`FeatureRow` per feature with its test, statistic,
threshold, verdict, PSI band, null and new-category rates and alert state. The CLI
prints it as a table and :mod:`entai.shared.monitoring._drift_report_html` renders it as HTML;
both format numbers with :func:`fmt`. A ranker's report (``"kind": "ranker"``, see
``RankerWatch.report``) reads as :func:`ranker_lines`: its newest windows' fairness
and its alert levels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from entai.shared.core import InvalidInputError

__all__ = [
    "TABLE_COLUMNS",
    "FeatureRow",
    "ReportSummary",
    "fmt",
    "header_lines",
    "ranker_lines",
    "summarize",
    "table_cells",
    "verdict",
]

_VERDICTS = {"drift": "yes", "no_drift": "no", "insufficient_data": "too few rows"}

TABLE_COLUMNS = (
    "feature",
    "method",
    "statistic",
    "threshold",
    "drifted",
    "PSI (band)",
    "null rate",
    "new categories",
    "alert",
)
"""Headers of the per-feature table; :func:`table_cells` gives a row's cells."""


@dataclass(frozen=True)
class FeatureRow:
    """One column of the last closed window.

    Attributes:
        feature: Column name.
        method: Test or distance that decided (``ks``, ``chi2``, ``wasserstein``...).
        statistic: Its value (None with too few rows).
        threshold: The p-value level or distance that counts as drift.
        status: ``drift``, ``no_drift`` or ``insufficient_data``.
        psi: Population stability index; psi_band: ``none``, ``moderate``, ``major``.
        null_rate: Share of nulls in the window.
        new_category_rate: Share of values in categories the reference never had.
        alert: Alert level of the column's key (``ok``, ``warn``, ``alert``), with
            ``acknowledged_by`` / ``silenced_until`` when set.
    """

    feature: str
    method: str
    statistic: float | None
    threshold: float | None
    status: str
    psi: float | None
    psi_band: str
    null_rate: float | None
    new_category_rate: float | None
    alert: str
    acknowledged_by: str | None = None
    silenced_until: str | None = None


@dataclass(frozen=True)
class ReportSummary:
    """Header and rows of a report.

    Attributes:
        window_id: The last closed window (None before the first closes).
        n: Rows in that window; closed_at / closed_by: when and why it closed.
        status: Its dataset drift status; drifted_share: share of drifted features.
        dataset_alert: Alert level of the dataset-drift key.
        prediction: Prediction drift, as a row (None without a prediction reference).
        expected_accuracy: Label-free estimate of the window's accuracy.
        realised: ``{"n_labels", "auc", "log_loss"}`` once labels arrived.
        open_window_id / open_n: The window being filled.
        windows_closed: Closed windows kept.
    """

    model: str
    version: int
    window_id: str | None
    n: int
    closed_at: str | None
    closed_by: str | None
    status: str | None
    drifted_share: float | None
    dataset_alert: str
    prediction: FeatureRow | None
    expected_accuracy: float | None
    realised: Mapping[str, Any] | None
    open_window_id: str
    open_n: int
    windows_closed: int
    rows: tuple[FeatureRow, ...]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for people: ``-`` for None or NaN, else ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def verdict(status: str | None) -> str:
    """``yes`` / ``no`` / ``too few rows`` for a drift status (``-`` for None)."""
    return "-" if status is None else _VERDICTS.get(status, status)


def _alerts(report: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for alert in report.get("alerts", []):
        _, feature, method = alert["key"]
        out[(str(feature), str(method))] = alert
    return out


def _row(
    feature: str, summary: Mapping[str, Any], alerts: Mapping[tuple[str, str], Mapping[str, Any]]
) -> FeatureRow:
    method = str(summary["method"])
    alert = alerts.get((feature, method), {})
    return FeatureRow(
        feature=feature,
        method=method,
        statistic=summary.get("statistic"),
        threshold=summary.get("threshold"),
        status=str(summary["status"]),
        psi=summary.get("psi"),
        psi_band=str(summary.get("psi_band") or "-"),
        null_rate=summary.get("null_rate"),
        new_category_rate=summary.get("new_category_rate"),
        alert=str(alert.get("level", "ok")),
        acknowledged_by=alert.get("acknowledged_by"),
        silenced_until=alert.get("silenced_until"),
    )


def summarize(report: Mapping[str, Any]) -> ReportSummary:
    """Header and per-feature rows of a drift monitor report.

    Raises:
        InvalidInputError: when ``report`` is not a drift monitor report.
    """
    try:
        alerts = _alerts(report)
        windows = list(report["windows"])
        last: Mapping[str, Any] = windows[-1] if windows else {}
        features = last.get("features", {})
        rows = tuple(_row(str(name), features[name], alerts) for name in features)
        prediction = last.get("prediction")
        dataset = alerts.get(("*", "dataset"), {})
        return ReportSummary(
            model=str(report["model"]),
            version=int(report["version"]),
            window_id=last.get("window_id"),
            n=int(last.get("n", 0)),
            closed_at=last.get("closed_at"),
            closed_by=last.get("closed_by"),
            status=last.get("status"),
            drifted_share=last.get("drifted_share"),
            dataset_alert=str(dataset.get("level", "ok")),
            prediction=(
                None
                if prediction is None
                else _row(str(report["prediction_column"]), prediction, alerts)
            ),
            expected_accuracy=last.get("expected_accuracy"),
            realised=last.get("realised"),
            open_window_id=str(report["open_window"]["window_id"]),
            open_n=int(report["open_window"]["n"]),
            windows_closed=len(windows),
            rows=rows,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"not a drift monitor report: {exc!r}", details={"field": "report"}
        ) from exc


def header_lines(summary: ReportSummary) -> list[str]:
    """The report's header, one fact per line (plain text; names are not escaped)."""
    lines = [f"model {summary.model} v{summary.version}"]
    if summary.window_id is None:
        lines.append(
            f"no closed window yet; open window {summary.open_window_id} has {summary.open_n} rows"
        )
        return lines
    lines.append(
        f"window {summary.window_id}: {summary.n} rows, closed by {summary.closed_by} "
        f"at {summary.closed_at} ({summary.windows_closed} closed windows kept; "
        f"open window has {summary.open_n} rows)"
    )
    share = "-" if summary.drifted_share is None else f"{summary.drifted_share:.0%}"
    lines.append(
        f"dataset drift: {verdict(summary.status)} ({share} of features drifted; "
        f"alert {summary.dataset_alert})"
    )
    pred = summary.prediction
    lines.append(
        "prediction drift: -"
        if pred is None
        else f"prediction drift: {verdict(pred.status)} ({pred.method} {fmt(pred.statistic)}, "
        f"threshold {fmt(pred.threshold)}; alert {pred.alert})"
    )
    realised = summary.realised
    quality = (
        "realised: no labels yet"
        if not realised
        else f"realised AUC {fmt(realised.get('auc'))}, log loss {fmt(realised.get('log_loss'))} "
        f"({realised.get('n_labels', 0)} labels)"
    )
    lines.append(f"quality: {quality}; estimated accuracy {fmt(summary.expected_accuracy)}")
    for attribute, result in sorted(((realised or {}).get("fairness") or {}).items()):
        lines.append(f"fairness by {attribute}: {_fairness_text(result)}")
    return lines


def _fairness_text(result: Mapping[str, Any]) -> str:
    """One attribute's measures in a window, those beyond the policy's threshold marked."""
    if not result.get("available"):
        return f"unavailable ({result.get('reason', '')})"
    crossed = set(result.get("crossed", []))
    shown = ", ".join(
        f"{measure} {fmt(value)}" + (" (beyond the threshold)" if measure in crossed else "")
        for measure, value in result["measures"].items()
    )
    counted = (
        f"{result['impressions']} impressions"
        if "impressions" in result
        else f"{result.get('n_labels', 0)} labels"
    )
    return f"{shown} ({counted})"


def ranker_lines(report: Mapping[str, Any], windows: int = 3) -> list[str]:
    """A ranker's report as lines: its newest ``windows`` windows' fairness by attribute
    (closed or still open), then every alert key's level."""
    kept = report.get("windows", [])
    lines = [
        f"ranker {report['model']} version {report['version']}: {len(kept)} windows of "
        f"{fmt(report['window']['seconds'], 0)} s kept (refreshed at "
        f"{report.get('refreshed_at') or 'never'})"
    ]
    for window in kept[-windows:]:
        state = "closed" if window.get("closed") else "open"
        lines.append(
            f"window {window.get('window_id')} ({state}): {window['requests']} requests, "
            f"{window['labelled_requests']} with feedback"
        )
        for attribute, result in sorted(window["fairness"].items()):
            lines.append(f"  fairness by {attribute}: {_fairness_text(result)}")
    for alert in report.get("alerts", []):
        _, attribute, measure = alert["key"]
        lines.append(f"alert {attribute}/{measure}: {alert['level']}")
    return lines


def _alert_text(row: FeatureRow) -> str:
    text = row.alert
    if row.acknowledged_by:
        text += f" (acknowledged by {row.acknowledged_by})"
    if row.silenced_until:
        text += f" (silenced until {row.silenced_until})"
    return text


def table_cells(row: FeatureRow) -> list[str]:
    """A row's cells under :data:`TABLE_COLUMNS`, as plain text."""
    return [
        row.feature,
        row.method,
        fmt(row.statistic),
        fmt(row.threshold),
        verdict(row.status),
        f"{fmt(row.psi)} ({row.psi_band})",
        fmt(row.null_rate),
        fmt(row.new_category_rate),
        _alert_text(row),
    ]
