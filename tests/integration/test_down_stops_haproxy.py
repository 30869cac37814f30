"""`entai down` leaves nothing of the platform behind when Serve runs HAProxy ingress.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Serve's HAProxyManager actor spawns an ``haproxy``
process; Ray runs each worker in a process group of its own, so stopping the head's
group orphaned that HAProxy, which kept the Serve HTTP and gRPC ports and its stats
and metrics pages, and the next `entai up` could not bind them. Here `entai up` runs
with HAProxy on, `entai deploy` deploys a one-function application with HTTP and gRPC
(``haproxy_hello.py``), HAProxy answers on its stats page; after `entai down` no
process of the head's session runs and every one of those ports can be bound again.

A laptop's `entai up` (no setting, no Ray variable) runs the same HAProxy fenced to
loopback: nothing the head's session starts listens beyond 127.0.0.1 (``ss``), and
`entai down` stops it all the same.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from entai.actors.core import session_processes
from entai.deployments.grpc_ingress import SERVICER_FUNCTION

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    """Whether ``port`` can be bound on every interface (HAProxy's pages bind there)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            probe.bind(("", port))
        except OSError:
            return False
        return True


def _entai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("entai")), *args],
        env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
    return done


def _platform_env(tmp_path: Path, serve_port: int) -> dict[str, str]:
    """The environment of `entai` commands on a home of their own, no Ray variable."""
    (tmp_path / "user").mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTAI_", "RAY_"))},
        "HOME": str(tmp_path / "user"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "ENTAI_HOME": str(tmp_path / "home"),
        "ENTAI_RAY__DASHBOARD_PORT": str(_free_port()),
        "ENTAI_RAY__NUM_CPUS": "2",
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "1",
        "ENTAI_SERVE__PORT": str(serve_port),
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "200",
    }


def _hello_config(tmp_path: Path, http_port: int, grpc_port: int | None) -> Path:
    config = tmp_path / "serve.yaml"
    grpc = {"port": grpc_port, "grpc_servicer_functions": [SERVICER_FUNCTION]}
    config.write_text(
        json.dumps(
            {
                "http_options": {"host": "127.0.0.1", "port": http_port},
                **({"grpc_options": grpc} if grpc_port else {}),
                "applications": [
                    {"name": "hello", "route_prefix": "/", "import_path": "haproxy_hello:app"}
                ],
            }
        )
    )
    return config


def _stopped(env: dict[str, str], home: Path, sid: int) -> list[str]:
    """`entai down`: its lines, once it said so and left no process of the session."""
    down = _entai(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    lines = down.stdout.strip().splitlines()
    assert lines[0].startswith("stopped the Ray head at 127.0.0.1:"), lines
    assert lines[-1] == "entai stopped.", lines
    assert session_processes(sid) == [], f"processes of the head survived: {lines}"
    assert not (home / "cluster.json").exists()
    return lines


def _listeners(pids: set[int]) -> list[tuple[str, str, int, str]]:
    """(protocol, address, port, process) of every TCP/UDP socket the ``pids`` listen on."""
    done = subprocess.run(
        ["ss", "-ltunpH"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"this test needs `ss` (iproute2): {done.stderr}"
    found = []
    for line in done.stdout.splitlines():
        # "tcp LISTEN 0 128 127.0.0.1:8404 0.0.0.0:* users:(("haproxy",pid=7,fd=9))"
        proto, _state, _recv, _send, local, *rest = line.split()
        address, port = local.rsplit(":", 1)
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', " ".join(rest)):
            if int(pid) in pids:
                found.append((proto, address.strip("[]").split("%")[0], int(port), name))
    return found


def _direct_ingress_ports(config: str) -> set[int]:
    """The replicas' own HTTP ports HAProxy forwards to: its backends' servers on
    loopback (``server <name> 127.0.0.1:<port> check``). Not a port range: a replica
    also serves Ray's inter-deployment gRPC on an ephemeral port of every interface
    (``[::]:0`` in ray/serve/_private/replica.py, whatever the ingress), which may
    fall in Ray's direct-ingress ranges (30000-31000, 40000-41000)."""
    return {int(port) for port in re.findall(r"^\s+server \S+ 127\.0\.0\.1:(\d+) ", config, re.M)}


def test_a_laptops_up_serves_through_haproxy_on_loopback_only(tmp_path: Path) -> None:
    http_port = _free_port()
    env = _platform_env(tmp_path, http_port)
    home = tmp_path / "home"
    up = _entai(env, "up", "--gcs-port", str(_free_port()), "--mlflow-port", "0")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        sid = json.loads((home / "cluster.json").read_text())["pgid"]
        deploy = _entai(
            env, "deploy", "--serve-config", str(_hello_config(tmp_path, http_port, None))
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=30).text == "hello"
        haproxy = [pid for pid, name in session_processes(sid) if name == "haproxy"]
        assert haproxy, "no HAProxy among the head's processes"
        config = next((home / "haproxy").glob("*/haproxy.cfg"))  # Ray adds the node's id
        cmdline = Path(f"/proc/{haproxy[-1]}/cmdline").read_bytes().split(b"\0")
        assert str(config).encode() in cmdline, cmdline
        stats = re.search(r"^listen stats\n\s+bind 127\.0\.0\.1:(\d+)$", config.read_text(), re.M)
        assert stats, config.read_text()
        page = httpx.get(f"http://127.0.0.1:{stats.group(1)}/stats", timeout=10)
        assert page.status_code == 200 and "HAProxy" in page.text

        head_env = dict(
            entry.split(b"=", 1) for entry in Path(f"/proc/{sid}/environ").read_bytes().split(b"\0")
            if b"=" in entry
        )  # fmt: skip
        serve_ports = {http_port} | {
            int(head_env[name.encode()])
            for name in (
                "RAY_SERVE_HAPROXY_STATS_PORT",
                "RAY_SERVE_HAPROXY_METRICS_PORT",
                "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
                "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
            )
        }
        replica_ports = _direct_ingress_ports(config.read_text())
        listening = _listeners({pid for pid, _ in session_processes(sid)})
        print(json.dumps({"head_session_listeners": listening}))  # for the report (-s)
        serves = [
            entry for entry in listening
            if entry[3] == "haproxy" or entry[2] in serve_ports
            or (entry[3].startswith("ray::ServeRepli") and entry[2] in replica_ports)
        ]  # fmt: skip
        assert replica_ports, config.read_text()  # HAProxy forwards to a replica's own port
        assert replica_ports <= {port for _, _, port, _ in serves}, listening
        beyond = [entry for entry in serves if entry[1] not in {"127.0.0.1", "::1"}]
        assert beyond == [], f"Serve listens beyond loopback: {beyond}"
        # Freed after `entai down`; not the replicas' ports: every local Ray's replicas
        # draw from the same range, so another one may hold it by then.
        ports = {port for _, _, port, name in serves if not name.startswith("ray::ServeRepli")}
        _stopped(env, home, sid)
    finally:
        if (home / "cluster.json").exists():  # a check failed before `entai down`
            _entai(env, "down")
    assert [port for port in ports if not _bindable(port)] == []


def test_down_stops_serves_haproxy_and_frees_its_ports(tmp_path: Path) -> None:
    ports = {
        "serve_http": _free_port(),
        "serve_grpc": _free_port(),
        "haproxy_stats": _free_port(),
        "haproxy_metrics": _free_port(),
    }
    env = {
        **_platform_env(tmp_path, ports["serve_http"]),
        "ENTAI_SERVE__GRPC_PORT": str(ports["serve_grpc"]),
        # The gRPC proxy binds every interface: accepted, as the cluster's settings do.
        "ENTAI_SERVE__WILDCARD_LISTENERS": "true",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports["haproxy_stats"]),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports["haproxy_metrics"]),
    }
    config = _hello_config(tmp_path, ports["serve_http"], ports["serve_grpc"])
    up = _entai(env, "up", "--gcs-port", str(_free_port()), "--mlflow-port", "0")
    home = tmp_path / "home"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        sid = json.loads((home / "cluster.json").read_text())["pgid"]
        deploy = _entai(env, "deploy", "--serve-config", str(config))
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        url = f"http://127.0.0.1:{ports['serve_http']}/"
        assert httpx.get(url, timeout=30).text == "hello"
        stats = httpx.get(f"http://127.0.0.1:{ports['haproxy_stats']}/stats", timeout=10)
        assert stats.status_code == 200 and "HAProxy" in stats.text
        haproxy = [pid for pid, name in session_processes(sid) if name == "haproxy"]
        assert haproxy, "no HAProxy among the head's processes"
        taken = [name for name, port in ports.items() if not _bindable(port)]
        assert sorted(taken) == sorted(ports), taken  # all four are HAProxy's now

        lines = _stopped(env, home, sid)
    finally:
        if (home / "cluster.json").exists():  # a check failed before `entai down`
            _entai(env, "down")
    left = [name for name, port in ports.items() if not _bindable(port)]
    assert left == [], f"still bound after `entai down`: {left}; it said: {lines}"
