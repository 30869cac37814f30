"""The local processes `entai up` owns, without Ray: the dashboard agent's port, the
MLflow UI's record, start and stop (a stand-in server replaces MLflow), and the stop
of a head (a stand-in for `ray start`) with what its workers left in its session."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from entai.actors.core import (
    HeadInfo,
    agent_port,
    group_alive,
    kill_group,
    kill_session,
    launch_mlflow_ui,
    mlflow_ui_env,
    read_head,
    read_mlflow_ui,
    session_processes,
    spawn_group,
    start_head,
    stop_head,
    stop_mlflow_ui,
    wait_for_mlflow_ui,
)
from entai.client import running_address, stop_platform
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


# A stand-in for `ray start --head --block`: like a Ray worker, it starts a process in
# a process group of its own (same session) that listens on a port, as Serve's HAProxy
# does; then it blocks.
_FAKE_HEAD = """
import subprocess, sys, time

listener = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], process_group=0)
print(listener.pid, flush=True)
time.sleep(600)
"""

_LISTENER = """
import signal, socket, sys, time

if len(sys.argv) > 2:  # deaf to SIGTERM: only SIGKILL stops it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
server = socket.socket()
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: an exited process nobody reaped (a zombie) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@dataclass
class FakeHead:
    info: HeadInfo
    listener: int
    port: int


@pytest.fixture
def fake_head(tmp_path: Path) -> Iterator[FakeHead]:
    """A head recorded under the home, whose worker's child listens on a port; and a
    process of another session (not entai's) that must outlive every stop."""
    assert Path("/proc/self/stat").exists(), "these tests read process states from /proc"
    port = _free_port()
    log = tmp_path / "logs" / "ray-head.log"
    head = spawn_group(
        [sys.executable, "-c", _FAKE_HEAD, _LISTENER, str(port)], log, dict(os.environ)
    )
    _until(lambda: log.read_text().strip() != "" and not _bindable(port))
    info = HeadInfo("127.0.0.1:1", head.pid, "http://127.0.0.1:1", str(log))
    (tmp_path / "cluster.json").write_text(json.dumps(dataclasses.asdict(info)))
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield FakeHead(info, int(log.read_text().split()[0]), port)
        assert _running(bystander.pid), "a process of another session was stopped"
    finally:
        bystander.kill()
        bystander.wait()
        for pid, _name in session_processes(head.pid):  # only if the test failed
            os.kill(pid, signal.SIGKILL)
        head.wait()


def test_stopping_the_head_stops_what_its_workers_left_in_its_session(
    tmp_path: Path, fake_head: FakeHead
) -> None:
    settings = load_settings(home=tmp_path).resolved()
    assert read_head(settings) == fake_head.info
    assert session_processes(fake_head.info.pgid)[1][0] == fake_head.listener

    stopped = stop_head(settings)

    assert stopped[0] == "stopped the Ray head at 127.0.0.1:1"
    assert len(stopped) == 2, stopped  # one line for the listener the group left
    assert stopped[1].startswith("stopped python")
    assert f"(pid {fake_head.listener}), left running by the head's workers" in stopped[1]
    assert not _running(fake_head.listener)
    assert _bindable(fake_head.port)
    assert session_processes(fake_head.info.pgid) == []
    assert not (tmp_path / "cluster.json").exists()
    assert stop_head(settings) == []


def test_a_head_that_died_has_what_it_left_stopped_by_down_and_by_the_next_up(
    tmp_path: Path, fake_head: FakeHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(home=tmp_path).resolved()
    kill_group(fake_head.info.pgid)  # the head's group only: its worker's child lives on
    assert _running(fake_head.listener) and not _bindable(fake_head.port)
    # Not running, but the record stays: it is how its leftovers are found.
    assert read_head(settings) is None
    assert (tmp_path / "cluster.json").exists()
    assert running_address(settings) is None

    # `entai up` clears them before it starts a head (the start itself is not wanted here).
    import entai.actors.core._local_head as local_head

    monkeypatch.setattr(local_head, "port_open", lambda port: True)
    with pytest.raises(ConflictError, match="port 1 is already in use"):
        start_head(settings, gcs_port=1)
    assert not _running(fake_head.listener)
    assert _bindable(fake_head.port)
    assert not (tmp_path / "cluster.json").exists()


def test_down_stops_what_a_head_that_died_left(tmp_path: Path, fake_head: FakeHead) -> None:
    settings = load_settings(home=tmp_path).resolved()
    kill_group(fake_head.info.pgid)
    stopped = stop_platform(settings)
    assert len(stopped) == 1 and stopped[0].startswith("stopped python (pid "), stopped
    assert not _running(fake_head.listener)
    assert _bindable(fake_head.port)
    assert stop_platform(settings) == []


def test_a_process_deaf_to_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    assert Path("/proc/self/stat").exists(), "these tests read process states from /proc"
    port = _free_port()
    deaf = spawn_group(
        [sys.executable, "-c", _LISTENER, str(port), "deaf"],
        tmp_path / "deaf.log",
        dict(os.environ),
    )
    _until(lambda: not _bindable(port))
    started = time.monotonic()
    found = kill_session(deaf.pid, grace_s=1.0)
    assert [pid for pid, _ in found] == [deaf.pid]
    assert time.monotonic() - started >= 1.0  # SIGTERM was ignored: SIGKILL after the grace
    assert deaf.wait(timeout=10) == -signal.SIGKILL
    assert _bindable(port)
    assert kill_session(deaf.pid) == []
