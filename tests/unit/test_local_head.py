"""The local processes `entai up` owns, without Ray: the dashboard agent's port, and the
MLflow UI's record, start and stop (a stand-in server replaces MLflow)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from entai.actors.core import (
    agent_port,
    group_alive,
    launch_mlflow_ui,
    mlflow_ui_env,
    read_mlflow_ui,
    stop_mlflow_ui,
    wait_for_mlflow_ui,
)
from entai.shared.core import ConflictError, ServiceUnavailableError
from entai.shared.settings import EntaiSettings, load_settings


def test_a_taken_default_agent_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        chosen = agent_port(taken, explicit=False)
        assert chosen != taken
        with socket.socket() as probe:
            probe.bind(("", chosen))  # really free
        with pytest.raises(ConflictError, match=f"port {taken}"):
            agent_port(taken, explicit=True)
    assert agent_port(taken, explicit=True) == taken


_FAKE_UI = """
import http.server, sys

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


@pytest.fixture
def fake_ui(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """`mlflow server` replaced by a tiny HTTP server answering /health (no MLflow)."""
    import entai.actors.core._mlflow_ui as mlflow_ui

    commands: list[list[str]] = []
    real_command = mlflow_ui.mlflow_ui_command

    def command(settings: EntaiSettings, port: int) -> list[str]:
        commands.append(real_command(settings, port))
        return [sys.executable, "-c", _FAKE_UI, str(port)]

    monkeypatch.setattr(mlflow_ui, "mlflow_ui_command", command)
    return commands


def test_the_mlflow_ui_is_recorded_under_the_home_and_stopped_with_its_group(
    tmp_path: Path, fake_ui: list[list[str]]
) -> None:
    settings = load_settings(home=tmp_path).resolved()
    with socket.socket() as holder:  # the preferred port is taken: a free one is used
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ui = launch_mlflow_ui(settings, port=taken)
    try:
        assert not ui.url.endswith(f":{taken}")
        assert wait_for_mlflow_ui(ui, timeout_s=60)
        assert read_mlflow_ui(settings) == ui
        assert launch_mlflow_ui(settings, port=taken) == ui  # running: reused, not doubled
        assert len(fake_ui) == 1
        # the real command serves the platform's store on loopback; the store's URI
        # (a PostgreSQL one carries the password) is in the environment, not in argv
        real = fake_ui[0]
        assert "--backend-store-uri" not in real
        uri = settings.mlflow.tracking_uri.get_secret_value()
        assert not any(uri in word for word in real)
        assert mlflow_ui_env(settings)["MLFLOW_BACKEND_STORE_URI"] == uri
        assert real[real.index("--host") + 1] == "127.0.0.1"
    finally:
        stopped = stop_mlflow_ui(settings)
    assert stopped
    assert not group_alive(ui.pgid)
    assert read_mlflow_ui(settings) is None
    assert not (tmp_path / "mlflow-ui.json").exists()
    assert stop_mlflow_ui(settings) is False


def test_a_ui_that_exits_while_starting_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import entai.actors.core._mlflow_ui as mlflow_ui

    monkeypatch.setattr(
        mlflow_ui,
        "mlflow_ui_command",
        lambda settings, port: [sys.executable, "-c", "raise SystemExit('no store here')"],
    )
    settings = load_settings(home=tmp_path).resolved()
    ui = launch_mlflow_ui(settings)
    exited = r"exited while starting; see .*mlflow-ui\.log"
    with pytest.raises(ServiceUnavailableError, match=exited):
        wait_for_mlflow_ui(ui, timeout_s=60)
    assert "no store here" in Path(ui.log_file).read_text()
    assert read_mlflow_ui(settings) is None  # its group is gone: the record is dropped
