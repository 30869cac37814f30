"""The smallest Serve application, for ``test_down_stops_haproxy.py``: Serve's replicas
import it from the head's ``PYTHONPATH`` (this directory)."""

from __future__ import annotations

from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
def hello(request: Request) -> str:
    """Answer every request with the same word."""
    return "hello"


app = hello.bind()
