"""`entai down` leaves nothing of the platform behind when Serve runs HAProxy ingress.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Serve's HAProxyManager actor spawns an ``haproxy``
process; Ray runs each worker in a process group of its own, so stopping the head's
group orphaned that HAProxy, which kept the Serve HTTP and gRPC ports and its stats
and metrics pages, and the next `entai up` could not bind them. Here `entai up` runs
with HAProxy on, `entai deploy` deploys a one-function application with HTTP and gRPC
(``haproxy_hello.py``), HAProxy answers on its stats page; after `entai down` no
process of the head's session runs and every one of those ports can be bound again.
"""

from __future__ import annotations

import json
import os
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


def test_down_stops_serves_haproxy_and_frees_its_ports(tmp_path: Path) -> None:
    ports = {
        "serve_http": _free_port(),
        "serve_grpc": _free_port(),
        "haproxy_stats": _free_port(),
        "haproxy_metrics": _free_port(),
    }
    (tmp_path / "user").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTAI_", "RAY_"))},
        "HOME": str(tmp_path / "user"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "ENTAI_HOME": str(tmp_path / "home"),
        "ENTAI_RAY__DASHBOARD_PORT": str(_free_port()),
        "ENTAI_RAY__NUM_CPUS": "2",
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "1",
        "ENTAI_SERVE__PORT": str(ports["serve_http"]),
        "ENTAI_SERVE__GRPC_PORT": str(ports["serve_grpc"]),
        # HAProxy's pages bind every interface: accepted, as the cluster's settings do.
        "ENTAI_SERVE__WILDCARD_LISTENERS": "true",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(ports["haproxy_stats"]),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(ports["haproxy_metrics"]),
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "200",
    }
    config = tmp_path / "serve.yaml"
    config.write_text(
        json.dumps(
            {
                "http_options": {"host": "127.0.0.1", "port": ports["serve_http"]},
                "grpc_options": {
                    "port": ports["serve_grpc"],
                    "grpc_servicer_functions": [SERVICER_FUNCTION],
                },
                "applications": [
                    {"name": "hello", "route_prefix": "/", "import_path": "haproxy_hello:app"}
                ],
            }
        )
    )
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

        down = _entai(env, "down")
    finally:
        if (home / "cluster.json").exists():  # a check failed before `entai down`
            _entai(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    lines = down.stdout.strip().splitlines()
    assert lines[0].startswith("stopped the Ray head at 127.0.0.1:"), lines
    assert lines[-1] == "entai stopped.", lines
    assert session_processes(sid) == [], f"processes of the head survived: {lines}"
    left = [name for name, port in ports.items() if not _bindable(port)]
    assert left == [], f"still bound after `entai down`: {left}; it said: {lines}"
    assert not (home / "cluster.json").exists()
