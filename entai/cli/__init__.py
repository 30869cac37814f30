"""The ``entai`` command: one Typer app, a module per command group.

Commands are thin: they parse, call a function, print, and return the function's
result so tests can call them directly.
"""

from __future__ import annotations

from entai.cli import (  # noqa: F401 - registers the commands
    data,
    events,
    governance,
    models,
    monitor,
    platform,
    scoring,
    tls,
    trace,
)
from entai.cli._app import app, console, main

__all__ = ["app", "console", "main"]
