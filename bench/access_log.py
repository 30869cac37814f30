"""The serving replica's access log: what logging costs one served request.

    .venv/bin/python bench/access_log.py [--requests 100000] [--rounds 3]

Serve's replica logger is configured as in an ingress replica of throughput-optimized
Serve (its file handler behind a 1,000-record buffer, entai's redaction installed), in
a temporary directory. One served request's logging is then timed, ``--requests`` times:

(a) reference: ``serve.access_log: all``, Ray Serve's default: Serve's access line,
    written (entai's :class:`FailureLogMiddleware` is installed but off);
(b) entai: ``serve.access_log: failures``, the default: Serve's deployments have
    ``enable_access_log=False``, so Serve's call still makes its record and the
    logger's filter drops it, and the request passes :class:`FailureLogMiddleware`,
    which writes nothing for a 200.

The request itself is an ASGI app that sends a 200, measured alone and subtracted.
Rounds alternate (a) and (b); each figure is the median of the rounds. The last line
is JSON; "ratio" = entai's microseconds per request / the reference's (lower is
better).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"  # read when Serve's constants import

from ray.serve._private.common import ServeComponentType
from ray.serve._private.logging_utils import access_log_msg, configure_component_logger
from ray.serve.schema import LoggingConfig

from entai.deployments.access_log import FailureLogMiddleware, install_failure_log
from entai.shared.core import install_redaction
from entai.shared.settings import ServeSettings

ROUTE = "/v1/predict/{model}"


class _App:
    """What FailureLogMiddleware reads: the app's state."""

    def __init__(self) -> None:
        self.state = type("State", (), {})()


async def _served(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _discard(message: dict[str, Any]) -> None:
    return None


def _serve_logger(enable_access_log: bool, logs: str) -> logging.Logger:
    """Serve's replica logger as a throughput-optimized replica configures it (which
    also sends a replica's prints and stdout to it: this process keeps its own)."""
    printing, stdout, stderr = builtins.print, sys.stdout, sys.stderr
    configure_component_logger(
        component_name="entai_Ingress",
        component_id="bench",
        component_type=ServeComponentType.REPLICA,
        logging_config=LoggingConfig(enable_access_log=enable_access_log, logs_dir=logs),
        max_bytes=1 << 30,
        backup_count=1,
        buffer_size=1000,
    )
    builtins.print, sys.stdout, sys.stderr = printing, stdout, stderr
    return logging.getLogger("ray.serve")


async def _per_request_us(access_log: str, requests: int, logs: str) -> float:
    """Microseconds of one served request's logging (Serve's call and the middleware)."""
    logger = _serve_logger(access_log == "all", logs)
    app = _App()
    install_failure_log(app, ServeSettings(access_log=access_log))  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": "/v1/predict/churn", "app": app}
    extra = {"skip_context_filter": True, "serve_access_log": True}  # as a replica's
    middleware = FailureLogMiddleware(_served)
    started = time.perf_counter()
    for _ in range(requests):
        await middleware(scope, None, _discard)
        line = access_log_msg(method="POST", route=ROUTE, status="200", latency_ms=3.2)
        logger.info(line, extra=extra)  # as Serve's replica, after every request
    logged = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(requests):
        await _served(scope, None, _discard)
    bare = time.perf_counter() - started
    return (logged - bare) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    install_redaction()  # every entai process has it: each record passes its factory
    runs: dict[str, list[float]] = {"all": [], "failures": []}
    with tempfile.TemporaryDirectory() as logs:
        for _ in range(opts.rounds):
            for mode in ("all", "failures"):
                runs[mode].append(asyncio.run(_per_request_us(mode, opts.requests, logs)))
    reference, entai = statistics.median(runs["all"]), statistics.median(runs["failures"])
    print(f"reference (serve.access_log: all): {reference:.1f} us per request {runs['all']}")
    print(f"entai (serve.access_log: failures): {entai:.1f} us per request {runs['failures']}")
    figures = {
        "requests": opts.requests,
        "rounds": opts.rounds,
        "reference_us_per_request": round(reference, 2),
        "entai_us_per_request": round(entai, 2),
        "saved_us_per_request": round(reference - entai, 2),
        "ratio": round(entai / reference, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
