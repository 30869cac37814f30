"""The Typer app, its console, the global options and what a failing command prints.

At the default verbosity the console shows only what commands print: log records go
to ``<home>/logs/entai.log`` (JSON lines), and whatever libraries write to the
process's stdout and stderr (Ray's own log lines, the raylet's warnings its driver
prints, its C++ core's messages, Python warnings) to ``<home>/logs/output.log``.
``-v`` sends both to the console as well. A failing command prints one line
(``error: ...``) and exits non-zero; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from entai.shared.core import EntaiError, configure_logging
from entai.shared.settings import EntaiSettings, load_settings

__all__ = [
    "ConfigOption",
    "app",
    "console",
    "error_message",
    "join_ray",
    "main",
    "settings_from",
    "working",
]

log = logging.getLogger(__name__)

app = typer.Typer(
    name="entai",
    help="entai: feature store, training, registry, serving, governance and drift on Ray.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# One logical line per message, whatever the terminal's width (tests and scripts read it).
console = Console(soft_wrap=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings YAML file.", exists=True)
]

# Ray Data draws progress bars with tqdm, which entai does not install (every dataset
# would warn about it); the CLI shows its own progress. Read by Ray Data at import.
_PROCESS_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class _Output:
    """How this process reports: set by the global options and by :func:`main`."""

    verbose: bool = False
    debug: bool = False
    # Only the real command (main) moves file descriptor 2; tests calling the Typer
    # app in their own process keep theirs.
    own_process: bool = False
    logs: Path | None = None
    saved_fds: tuple[int, int] | None = None  # the real stdout and stderr, while captured


_OUTPUT = _Output()


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show the logs on the console.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the Python traceback when a command fails.")
    ] = False,
) -> None:
    """Global options: verbosity and tracebacks."""
    _OUTPUT.verbose = verbose
    _OUTPUT.debug = debug


def settings_from(config: Path | None) -> EntaiSettings:
    """Settings from the YAML file (if any) and env, with paths made absolute.

    Also sends this command's logs to ``<home>/logs`` (and the console with ``-v``).
    """
    settings = (EntaiSettings.from_yaml(config) if config else load_settings()).resolved()
    logs = settings.home / "logs"
    _OUTPUT.logs = logs
    configure_logging(settings.log_level, log_file=logs / "entai.log", console=_OUTPUT.verbose)
    if _OUTPUT.own_process and not _OUTPUT.verbose:
        _capture_output(logs / "output.log")
    return settings


def join_ray(settings: EntaiSettings, doing: str) -> None:
    """Join the running platform's Ray, or say in one line that a temporary one starts.

    Args:
        doing: What the command does, for that line (e.g. ``"ingesting"``).
    """
    from entai.actors.core import connect_ray
    from entai.client import platform_address

    if platform_address(settings) is None:
        console.print(
            f"no entai platform is running: {doing} on a temporary local Ray "
            "(`entai up` starts one that stays)"
        )
    connect_ray(settings)


@contextmanager
def working(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """Show progress while a block runs: a bar over ``total`` steps, else a spinner,
    with the elapsed time; nothing when the console is not a terminal (a pipe, a file).
    Yields the function that marks one step done."""
    if not console.is_terminal:
        yield lambda: None
        return
    columns: list[ProgressColumn | str] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    progress = Progress(*columns, TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task(description, total=total)
    with progress:
        yield lambda: progress.advance(task)


def _capture_output(path: Path) -> None:
    """Point file descriptors 1 and 2 at ``path``; the console keeps the real stdout.

    Ray writes below anything logging can reroute: its C++ core to descriptor 2, the
    driver's listener of raylet errors ("N PYTHON worker processes have been
    started...") with ``print`` to ``sys.stdout``. Only the CLI's console writes to
    the terminal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if _OUTPUT.saved_fds is None:
        _OUTPUT.saved_fds = (os.dup(1), os.dup(2))
        # Closed when the output is given back (_restore_output).
        console.file = os.fdopen(
            os.dup(_OUTPUT.saved_fds[0]), "w", encoding="utf-8", errors="replace", buffering=1
        )
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


def _restore_output() -> None:
    if _OUTPUT.saved_fds is None:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    real = console.file
    console.file = None  # type: ignore[assignment]  # rich: None means sys.stdout
    real.close()
    for fd, saved in zip((1, 2), _OUTPUT.saved_fds, strict=True):
        os.dup2(saved, fd)
        os.close(saved)
    _OUTPUT.saved_fds = None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def error_message(exc: BaseException) -> str:
    """One line saying what went wrong: an entai error's message, else type and reason.

    A Ray task or actor call that failed with an entai error carries it as ``cause``.
    """
    cause = getattr(exc, "cause", None)
    for candidate in (cause, exc):
        if isinstance(candidate, EntaiError):
            return _first_line(candidate.message) or type(candidate).__name__
    reason = _first_line(str(exc))
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def _fail(exc: BaseException, code: int) -> None:
    log.error("command failed", exc_info=exc)
    _release()
    if _OUTPUT.debug or "--debug" in sys.argv[1:]:
        traceback.print_exception(exc)
    line = Text.assemble(("error: ", "red"), error_message(exc))
    if not isinstance(exc, EntaiError) and not isinstance(getattr(exc, "cause", None), EntaiError):
        where = f"; the log is in {_OUTPUT.logs}" if _OUTPUT.logs else ""
        line.append(f" (--debug shows the traceback{where})", style="dim")
    console.print(line)
    raise SystemExit(code)


def _release() -> None:
    """Leave Ray (its shutdown may still print) while the output is captured, then give
    the output back."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            try:
                ray.shutdown()
            except Exception:  # leaving a broken cluster must not hide the news
                log.warning("leaving Ray failed", exc_info=True)
    _restore_output()


def main() -> None:
    """Console entry point: a failure prints one line and exits non-zero.

    Exit codes: 2 for an entai error (bad input, missing service, refused...), 1 for
    anything else, 130 when interrupted.
    """
    for key, value in _PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    _OUTPUT.own_process = True
    logging.captureWarnings(True)
    try:
        app()
    except EntaiError as exc:
        _fail(exc, 2)
    except KeyboardInterrupt as exc:
        _fail(exc, 130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        _fail(exc, 2 if isinstance(getattr(exc, "cause", None), EntaiError) else 1)
    finally:
        _release()
        _OUTPUT.own_process = False  # a test may call main() again, or the app directly
