"""A hostile client for the Serve tests: bad-token requests from threads, in its own process.

Run in its own process so that its threads do not share a GIL with the client whose
latency a test measures::

    python flood_client.py URL PATH REQUESTS CONCURRENCY [RATE] < body.json > statuses.json

Every request carries a new random, well-formed token (``entai_<12 hex>_<43>``), so
none can be answered from a cache of good tokens. Without RATE each worker sends back
to back; with it, the workers together send at most RATE requests a second. The answer
on stdout is ``{"statuses": [...], "started": t0, "ended": t1}`` (``time.time()``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def bad_token() -> str:
    """A token of the right shape that no one minted."""
    return f"entai_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


class Flood:
    """The flood, started in a subprocess; :meth:`wait` returns its answer."""

    def __init__(
        self,
        url: str,
        path: str,
        body: Any,
        requests: int,
        concurrency: int,
        rate_per_s: float | None = None,
    ) -> None:
        rate = [] if rate_per_s is None else [str(rate_per_s)]
        self._proc = subprocess.Popen(
            [sys.executable, __file__, url, path, str(requests), str(concurrency), *rate],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(body))
        self._proc.stdin.close()

    def wait(self, timeout_s: float = 600.0) -> dict[str, Any]:
        assert self._proc.stdout is not None
        out = self._proc.stdout.read()
        assert self._proc.wait(timeout=timeout_s) == 0, "the flood client failed"
        answer: dict[str, Any] = json.loads(out)
        return answer


def _main(url: str, path: str, requests: int, concurrency: int, rate: float | None) -> None:
    body = json.loads(sys.stdin.read())
    statuses: list[int] = []
    interval = 0.0 if rate is None else concurrency / rate

    def worker(index: int) -> None:
        next_at = time.monotonic() + index * interval / concurrency
        with httpx.Client(base_url=url, timeout=60.0) as client:
            for _ in range(requests // concurrency):
                if interval:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at += interval
                try:
                    answer = client.post(
                        path, json=body, headers={"Authorization": f"Bearer {bad_token()}"}
                    )
                    statuses.append(answer.status_code)
                except httpx.HTTPError:
                    statuses.append(-1)

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    json.dump({"statuses": statuses, "started": started, "ended": time.time()}, sys.stdout)


if __name__ == "__main__":
    _main(
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]) if len(sys.argv) > 5 else None,
    )
