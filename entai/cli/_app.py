"""The Typer app, its console, and the settings every command starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from entai.shared.core import EntaiError, configure_logging
from entai.shared.settings import EntaiSettings, load_settings

__all__ = ["ConfigOption", "app", "console", "main", "settings_from"]

app = typer.Typer(
    name="entai",
    help="entai: feature store, training, registry, serving, governance and drift on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings YAML file.", exists=True)
]


def settings_from(config: Path | None) -> EntaiSettings:
    """Settings from the YAML file (if any) and env, with paths made absolute."""
    settings = (EntaiSettings.from_yaml(config) if config else load_settings()).resolved()
    configure_logging(settings.log_level)
    return settings


def main() -> None:
    """Console entry point: entai errors become a one-line message and exit code 2."""
    try:
        app()
    except EntaiError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(2) from None
