"""A local head's HAProxy does not outlive the Serve actor that started it.

Serve's controller replaces a proxy it finds unhealthy by killing its actor
(``ray.kill``); Ray 2.60's HAProxy manager stops HAProxy only on a graceful shutdown,
and not at all while HAProxy is still starting. Such an HAProxy kept the Serve port and
HAProxy's stats and metrics ports, and every later manager on the head failed with
"address already in use" (the system tier, 4 December). The launcher a local head
gives Ray (``entai.actors.core._haproxy_fence``) has the kernel kill HAProxy with its
manager. Here, on the session's head (HAProxy fenced to loopback), the manager is
killed outright: its HAProxy goes with it, and the manager Serve starts next binds the
same ports and serves the application again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.system  # starts Serve on the session's head

PORT = 8127
APP = "manager-restart"


def _children_named(pid: int, name: str) -> list[int]:
    """Running child processes of ``pid`` whose command name is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and comm == name and state not in {"Z", "X"}:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in {"Z", "X"}


def _manager() -> tuple[Any, int] | None:
    """The head's HAProxyManager actor and its process id (None: there is none now)."""
    import ray

    for entry in ray.util.list_named_actors(all_namespaces=True):
        if not entry["name"].startswith("SERVE_PROXY_ACTOR"):
            continue
        handle = ray.get_actor(entry["name"], namespace=entry["namespace"])
        kind, pid = ray.get(
            handle.__ray_call__.remote(lambda self: (type(self).__name__, os.getpid())),
            timeout=60,
        )
        if kind.endswith("HAProxyManager"):
            return handle, pid
    return None


@pytest.fixture(scope="module")
def hello(ray_cluster: Any) -> Iterator[str]:
    from ray import serve

    @serve.deployment
    def hello_app(request: Any) -> str:
        return "hello"

    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(hello_app.bind(), name=APP, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{PORT}/"
    finally:
        serve.delete(APP)
        serve.shutdown()


def _wait(check: Any, what: str, timeout_s: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f}s"
        time.sleep(0.5)


def test_a_killed_haproxy_manager_takes_its_haproxy_and_the_next_one_serves(
    hello: str,
) -> None:
    import ray

    assert httpx.get(hello, timeout=30).text == "hello"
    found = _manager()
    assert found, "no HAProxyManager on the session's head: is HAProxy ingress on?"
    manager, manager_pid = found
    haproxy = _children_named(manager_pid, "haproxy")
    assert haproxy, f"no HAProxy under the manager (pid {manager_pid})"

    ray.kill(manager, no_restart=True)  # as the controller does to an unhealthy proxy

    _wait(lambda: not any(_alive(pid) for pid in haproxy), "the old HAProxy exited")

    def next_manager_serves() -> bool:
        try:  # while the controller replaces it, the old name may still resolve
            found = _manager()
            answered = httpx.get(hello, timeout=5).text == "hello"
        except (ray.exceptions.RayError, ValueError, httpx.HTTPError):
            return False
        if found is None or found[1] == manager_pid:
            return False
        return answered and bool(_children_named(found[1], "haproxy"))

    _wait(next_manager_serves, "a new HAProxyManager serving the app on the same port")
