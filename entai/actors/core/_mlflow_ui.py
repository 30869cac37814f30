"""The MLflow UI next to the platform's head: started by ``entai up``, stopped by ``down``.

``mlflow server`` on 127.0.0.1 (port 5000, or a free one when 5000 is taken) against
the platform's tracking store and artifact root, in its own process group recorded
in ``<home>/mlflow-ui.json``, like the head. It serves the UI and MLflow's REST API;
entai's own services keep talking to the store directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from entai.actors.core._local_head import (
    free_port,
    group_alive,
    kill_group,
    kill_session,
    spawn_group,
)
from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings

__all__ = [
    "DEFAULT_UI_PORT",
    "MlflowUi",
    "launch_mlflow_ui",
    "mlflow_ui_command",
    "mlflow_ui_env",
    "read_mlflow_ui",
    "stop_mlflow_ui",
    "wait_for_mlflow_ui",
]

DEFAULT_UI_PORT = 5000
_STATE_FILE = "mlflow-ui.json"
_HOST = "127.0.0.1"
# UIs this process launched: polling the child tells an exit apart from a zombie
# (a dead child not yet reaped still counts as a live process group).
_LAUNCHED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class MlflowUi:
    """An MLflow UI process group started by entai."""

    url: str
    pgid: int
    log_file: str


def _state_path(settings: EntaiSettings) -> Path:
    return settings.home / _STATE_FILE


def read_mlflow_ui(settings: EntaiSettings) -> MlflowUi | None:
    """The UI recorded under the home, if its process group is still alive."""
    path = _state_path(settings)
    if not path.exists():
        return None
    ui = MlflowUi(**json.loads(path.read_text()))
    if not group_alive(ui.pgid):
        path.unlink(missing_ok=True)
        return None
    return ui


def mlflow_ui_command(settings: EntaiSettings, port: int) -> list[str]:
    """``mlflow server`` on 127.0.0.1:``port`` against the settings' store, one worker.

    The tracking URI is not on the command line (``ps`` shows it to every user of the
    machine, and a PostgreSQL URI carries the password): :func:`mlflow_ui_env` passes
    it in the environment.
    """
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    return [
        mlflow_cli, "server",
        "--default-artifact-root", settings.mlflow.artifact_root,
        "--host", _HOST,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def mlflow_ui_env(settings: EntaiSettings) -> dict[str, str]:
    """The UI's environment: this one, the tracking URI, no background job runner."""
    return {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": settings.mlflow.tracking_uri.get_secret_value(),
        # Its background job runner is for MLflow's GenAI features; the UI does not need it.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def launch_mlflow_ui(settings: EntaiSettings, *, port: int = DEFAULT_UI_PORT) -> MlflowUi:
    """Start the UI (or return the running one) without waiting for it to answer.

    It is recorded before it answers, so ``entai down`` stops it whatever happens next.
    Start it after the tracking store's schema exists (the registry creates it): two
    processes creating one new SQLite store at once can fail.
    """
    running = read_mlflow_ui(settings)
    if running is not None:
        return running
    chosen = free_port(port, _HOST)
    log_file = settings.home / "logs" / "mlflow-ui.log"
    proc = spawn_group(mlflow_ui_command(settings, chosen), log_file, mlflow_ui_env(settings))
    _LAUNCHED[proc.pid] = proc
    ui = MlflowUi(url=f"http://{_HOST}:{chosen}", pgid=proc.pid, log_file=str(log_file))
    _state_path(settings).write_text(json.dumps(asdict(ui)))
    return ui


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2.0) as response:  # noqa: S310 - our own loopback URL
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for_mlflow_ui(ui: MlflowUi, *, timeout_s: float = 120.0) -> bool:
    """Wait until the UI answers; False if it is still starting after ``timeout_s``.

    Raises:
        ServiceUnavailableError: its processes exited (the message names its log).
    """
    deadline = time.monotonic() + timeout_s
    child = _LAUNCHED.get(ui.pgid)
    while not _answers(ui.url):
        if (child is not None and child.poll() is not None) or not group_alive(ui.pgid):
            raise ServiceUnavailableError(
                f"the MLflow UI exited while starting; see {ui.log_file}",
                details={"log": ui.log_file},
            )
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def stop_mlflow_ui(settings: EntaiSettings) -> bool:
    """Stop the UI recorded under the home: its process group, then anything left in
    its session (nothing else is signalled). False if none."""
    ui = read_mlflow_ui(settings)
    if ui is None:
        return False
    kill_group(ui.pgid)
    kill_session(ui.pgid)
    _state_path(settings).unlink(missing_ok=True)
    return True
