"""Event stream commands: the dead letters of a source, listed and replayed."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from entai.cli._app import ConfigOption, app, console, settings_from
from entai.cli.governance import TokenOption, authorized_principal

__all__ = ["events_app"]

events_app = typer.Typer(help="The platform's event streams.", no_args_is_help=True)
dead_letters_app = typer.Typer(
    help="Events that failed too often to land: list them, put them back on the bus.",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")
events_app.add_typer(dead_letters_app, name="dead-letters")

Source = Annotated[str, typer.Argument(help="The event source (a key of settings.streams).")]


@dead_letters_app.command("list")
def dead_letters_list(source: Source, config: ConfigOption = None) -> list[dict[str, Any]]:
    """A source's dead letters: event id, attempts, when, and the last error."""
    from entai.pipelines.features import DeadLetters  # ray: not at CLI start-up
    from entai.shared.data import Lake

    settings = settings_from(config)
    letters = DeadLetters(Lake(settings.lake.root)).entries(source)
    if not letters:
        console.print(f"no dead letters for source {source!r}")
        return []
    table = Table("event id", "attempts", "dead-lettered at", "error")
    for letter in letters:
        table.add_row(letter.event.event_id, str(letter.attempts), letter.at, letter.error)
    console.print(table)
    return [letter.to_dict() for letter in letters]


@dead_letters_app.command("replay")
def dead_letters_replay(
    source: Source,
    event_id: Annotated[
        list[str] | None,
        typer.Option("--event-id", help="Only this event (repeatable); default: all of them."),
    ] = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> int:
    """Put dead letters back on the bus for the consumers to land (needs events:write)."""
    from entai.actors.bus import bus_from_settings  # ray: not at CLI start-up
    from entai.client import join_running
    from entai.pipelines.features import DeadLetters
    from entai.shared.core import ServiceUnavailableError
    from entai.shared.data import Lake

    settings = settings_from(config)
    authorized_principal(settings, token, "events:write", f"source:{source}")
    if not join_running(settings):
        raise ServiceUnavailableError(
            "entai is not up: run `entai up` first (replay needs the bus)"
        )
    bus = bus_from_settings(settings)
    try:
        replayed = DeadLetters(Lake(settings.lake.root)).replay(bus, source, event_id or None)
    finally:
        bus.close()
    console.print(f"{replayed} dead letter(s) of {source!r} back on the bus")
    return replayed
