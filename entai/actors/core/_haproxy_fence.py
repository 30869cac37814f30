"""Serve's HAProxy, fenced to loopback: the launcher a local head gives Ray as HAProxy.

Ray 2.60 writes HAProxy's config with its stats page on ``bind *:<port>`` and its
Prometheus page on ``bind :<port>``, i.e. on every interface, whatever Serve's host.
A local head sets ``RAY_SERVE_HAPROXY_BINARY_PATH`` to a small script that runs this
file with the real binary's path first; every argument after it is Ray's own. The
file named by ``-f`` has each bind on every interface moved to 127.0.0.1, in place,
and then the real HAProxy replaces this process (``execv``): Ray waits for the pid it
started to answer on the admin socket, and finds its workers by the ``-f`` path in
their command line, so both stay what Ray expects. Reloads (``-sf <pids> -x <socket>``)
go through here too: Ray writes the whole config again before each.

Run as a script by path (``python -I -S``), so it imports nothing but the standard
library.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import sys
from pathlib import Path

FENCE_HOST = "127.0.0.1"

# "bind *:8404", "bind :9101", "bind 0.0.0.0:80", "bind :::80", "bind [::]:80"
_WILDCARD_BIND = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0|\[::\]|::|)(:\d+)(?=\s|$)", re.M)


def fence_config(text: str) -> str:
    """``text`` (an HAProxy config) with every bind on all interfaces moved to loopback."""
    return _WILDCARD_BIND.sub(rf"\g<1>{FENCE_HOST}\g<2>", text)


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


def main(argv: list[str]) -> None:
    """``argv``: this file, the real HAProxy, then HAProxy's arguments (with ``-f``)."""
    if len(argv) < 2:
        sys.exit("usage: _haproxy_fence.py HAPROXY_BINARY [HAPROXY ARGS...]")
    binary, args = argv[1], argv[2:]
    for flag, value in itertools.pairwise(args):
        if flag == "-f":
            fence_file(Path(value))
    os.execv(binary, [binary, *args])  # noqa: S606 - the binary the head was started with


if __name__ == "__main__":
    main(sys.argv)
