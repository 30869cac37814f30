"""Drift monitor commands: monitor report|ack|silence, against the running platform."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from entai.cli._app import ConfigOption, app, console, settings_from
from entai.cli.governance import TokenOption, authorized_principal, caller_token
from entai.shared.core import InvalidInputError
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.actors.core import ActorService
    from entai.actors.monitoring import DriftMonitor

__all__ = ["monitor_app"]

monitor_app = typer.Typer(
    help="The drift monitor: per-feature drift, alerts, HTML reports.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")

Feature = Annotated[str, typer.Argument(help="Feature column, or '*' for dataset drift.")]
Method = Annotated[str, typer.Argument(help="Its test: ks, chi2, wasserstein... or dataset.")]


def _monitor(settings: EntaiSettings) -> ActorService[DriftMonitor]:
    from entai.client import drift_monitor_service  # ray: not at CLI start-up

    return drift_monitor_service(settings)


def _print_report(report: dict[str, Any]) -> None:
    # The monitoring domain imports the statistics stack (scipy, pandas): seconds that
    # every other command would pay at start-up.
    from entai.shared.monitoring import (
        TABLE_COLUMNS,
        header_lines,
        ranker_lines,
        summarize,
        table_cells,
    )

    if report.get("kind") == "ranker":
        for line in ranker_lines(report):
            console.print(Text(line))
        return
    summary = summarize(report)
    for line in header_lines(summary):
        console.print(Text(line))
    rows = [*summary.rows, *([summary.prediction] if summary.prediction else [])]
    if not rows:
        return
    table = Table(*TABLE_COLUMNS)
    for row in rows:
        style = "red" if row.status == "drift" else None
        table.add_row(*(Text(cell) for cell in table_cells(row)), style=style)
    console.print(table)


@monitor_app.command("report")
def monitor_report(
    model: str,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write a self-contained HTML report with plots here.", dir_okay=False
        ),
    ] = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> dict[str, Any]:
    """Per-feature drift of the last closed window, alerts and quality; for a ranker, its
    fairness per window (needs audit:read)."""
    settings = settings_from(config)
    authorized_principal(settings, token, "audit:read", f"model:{model}")
    from entai.actors.monitoring import DriftMonitor  # ray: not at CLI start-up

    report = _monitor(settings).call(DriftMonitor.report, model)
    _print_report(report)
    if html is not None and report.get("kind") == "ranker":
        raise InvalidInputError(
            f"{model!r} is a ranker: its report has no drift plots for --html",
            details={"field": "html"},
        )
    if html is not None:
        from entai.shared.monitoring import render_html

        html.write_text(render_html(report), encoding="utf-8")
        console.print(Text(f"HTML report written to {html}"))
    return report


@monitor_app.command("ack")
def monitor_ack(
    model: str,
    feature: Feature,
    method: Method,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> str:
    """Acknowledge an alert: no more notifications at its level (needs models:approve)."""
    settings = settings_from(config)
    by = authorized_principal(settings, token, "models:approve", f"model:{model}")
    from entai.actors.monitoring import DriftMonitor  # ray: not at CLI start-up

    secret = caller_token(settings, token)
    _monitor(settings).call(DriftMonitor.acknowledge, model, feature, method, secret)
    console.print(Text(f"{model}/{feature}/{method}: acknowledged by {by}"))
    return by


def parse_until(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time in the future (no zone: UTC).

    Raises:
        InvalidInputError: when it is not ISO 8601 or not in the future.
    """
    try:
        until = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(
            f"--until {value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00+00:00)",
            details={"field": "until"},
        ) from exc
    until = until if until.tzinfo is not None else until.replace(tzinfo=UTC)
    if until <= (now or datetime.now(UTC)):
        raise InvalidInputError(
            f"--until {value!r} is not in the future", details={"field": "until"}
        )
    return until


@monitor_app.command("silence")
def monitor_silence(
    model: str,
    feature: Feature,
    method: Method,
    until: Annotated[str, typer.Option(help="ISO 8601 time; without a zone, UTC.")],
    token: TokenOption = None,
    config: ConfigOption = None,
) -> datetime:
    """Send no notifications for an alert before a time (needs models:approve)."""
    moment = parse_until(until)
    settings = settings_from(config)
    by = authorized_principal(settings, token, "models:approve", f"model:{model}")
    from entai.actors.monitoring import DriftMonitor  # ray: not at CLI start-up

    secret = caller_token(settings, token)
    _monitor(settings).call(DriftMonitor.silence, model, feature, method, moment, secret)
    console.print(Text(f"{model}/{feature}/{method}: silenced by {by} until {moment.isoformat()}"))
    return moment
