"""A Redis server a test starts, kills and starts again: an online store that really goes
away (the machine's shared Redis on 6379 must stay up for everyone else).

The server keeps an append-only file synced on every write in its own directory, so a
restart on the same port finds what was written before the kill, as a production
Redis with persistence would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["OwnedRedis"]


class OwnedRedis:
    """``redis-server`` on a free loopback port, data under ``directory``.

    Args:
        directory: Where its append-only file lives.
    """

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._binary = binary
        self._dir = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server and wait until it answers PING."""
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self._dir),
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
        }
        argv = [self._binary, *(a for name, value in options.items() for a in (f"--{name}", value))]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """Kill the server (SIGKILL: it goes away without a goodbye) and wait for it."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=20)
            self._process = None

    def answers(self) -> bool:
        """Whether the server answers PING now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False
