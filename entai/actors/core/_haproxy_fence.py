"""Serve's HAProxy, fenced to loopback: the launcher a local head gives Ray as HAProxy.

Ray 2.60 writes HAProxy's config with its stats page on ``bind *:<port>`` and its
Prometheus page on ``bind :<port>``, i.e. on every interface, whatever Serve's host.
A local head sets ``RAY_SERVE_HAPROXY_BINARY_PATH`` to a small script that runs this
file with the real binary's path first; every argument after it is Ray's own. The
file named by ``-f`` is rewritten in place (:func:`fence_config`), and then the real
HAProxy replaces this process (``execv``): Ray waits for the pid it started to answer
on the admin socket, and finds its workers by the ``-f`` path in their command line,
so both stay what Ray expects. Reloads (``-sf <pids> -x <socket>``) go through here
too: Ray writes the whole config again before each.

The rewrite does two things to Ray's config:

- every bind on all interfaces moves to 127.0.0.1;
- the HTTP frontend tells the client ``Connection: close`` when it refuses (4xx/5xx)
  a request whose body is large or chunked. The application says so itself when it
  refuses before reading such a body (``entai.deployments.edge_middleware``), but
  HAProxy drops a server's ``Connection`` header (it is hop-by-hop), then closes the
  client's connection anyway once the server has closed: without the header, the
  client learns it only by a broken pipe, after sending what the sockets take.

HAProxy is started by Serve's HAProxyManager actor and stopped by it on a graceful
shutdown; a manager killed outright (``ray.kill``, a crashed worker) would leave
HAProxy running, holding the Serve port and the stats and metrics ports, and the
next manager on the head could not bind them ("address already in use"). On Linux
this launcher therefore asks the kernel to kill HAProxy when the process that started
it dies (``PR_SET_PDEATHSIG``, kept across ``execv``).

Run as a script by path (``python -I -S``), so it imports nothing but the standard
library.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import os
import re
import signal
import sys
from pathlib import Path

FENCE_HOST = "127.0.0.1"
# The application drains an unread body up to this many bytes rather than close the
# connection (entai.deployments.edge_middleware.DRAIN_BYTES; a unit test pins both).
DRAIN_BYTES = 64 * 1024

# "bind *:8404", "bind :9101", "bind 0.0.0.0:80", "bind :::80", "bind [::]:80"
_WILDCARD_BIND = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0|\[::\]|::|)(:\d+)(?=\s|$)", re.M)
# The HTTP frontend's header and bind line (Ray: "frontend http_frontend\n    bind h:p").
_HTTP_FRONTEND = re.compile(r"^frontend http_frontend\n(\s*)bind [^\n]*\n", re.M)
_CLOSE_MARK = "# entai: Connection: close on a refused large body"
_CLOSE_RULES = (
    _CLOSE_MARK,
    "http-request set-var(txn.entai_large_body) bool(1)"
    f" if {{ req.hdr_val(content-length) gt {DRAIN_BYTES} }}"
    " or { req.hdr(transfer-encoding) -m found }",
    "http-response set-header Connection close"
    " if { var(txn.entai_large_body) -m bool } { status ge 400 }",
)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def fence_config(text: str) -> str:
    """``text`` (an HAProxy config) with every bind on all interfaces moved to loopback
    and the HTTP frontend closing refused large-body connections (once)."""
    fenced = _WILDCARD_BIND.sub(rf"\g<1>{FENCE_HOST}\g<2>", text)
    if _CLOSE_MARK in fenced:
        return fenced
    return _HTTP_FRONTEND.sub(
        lambda m: m.group(0) + "".join(f"{m.group(1)}{rule}\n" for rule in _CLOSE_RULES),
        fenced,
        count=1,
    )


def fence_file(path: Path) -> None:
    """Fence the config at ``path`` in place, under the lock Ray takes to write it."""
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        text = path.read_text()
        fenced = fence_config(text)
        if fenced != text:
            staged = path.with_name(path.name + ".fenced")
            staged.write_text(fenced)
            staged.replace(path)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process (and what it ``execv``s) when its parent,
    pid ``parent``, dies; exit now if it already has. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    if os.getppid() != parent:
        sys.exit("the process that started HAProxy is gone; not starting it")


def main(argv: list[str]) -> None:
    """``argv``: this file, the real HAProxy, then HAProxy's arguments (with ``-f``)."""
    parent = os.getppid()
    if len(argv) < 2:
        sys.exit("usage: _haproxy_fence.py HAPROXY_BINARY [HAPROXY ARGS...]")
    binary, args = argv[1], argv[2:]
    for flag, value in itertools.pairwise(args):
        if flag == "-f":
            fence_file(Path(value))
    die_with_parent(parent)
    os.execv(binary, [binary, *args])  # noqa: S606 - the binary the head was started with


if __name__ == "__main__":
    main(sys.argv)
