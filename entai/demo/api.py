"""The demo's calls of the platform's HTTP API: a bearer token, JSON, one clear line
when the answer is not the one expected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entai.shared.core import ServiceUnavailableError

__all__ = ["bearer", "post_json"]


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header of ``token``."""
    return {"Authorization": f"Bearer {token}"}


def post_json(
    url: str,
    path: str,
    token: str,
    body: Mapping[str, Any],
    *,
    expect: int = 200,
    timeout_s: float = 30.0,
) -> Any:
    """``POST {url}{path}`` of ``body`` as JSON with ``token``; the answer's JSON.

    Raises:
        ServiceUnavailableError: an answer other than HTTP ``expect``, as one line (the
            route, the status, the start of the answer).
    """
    import httpx  # kept out of the CLI's start-up, like the rest of the demo's HTTP

    answer = httpx.post(f"{url}{path}", json=body, headers=bearer(token), timeout=timeout_s)
    if answer.status_code != expect:
        raise ServiceUnavailableError(
            f"POST {path} answered HTTP {answer.status_code}: {answer.text[:300]}",
            details={"status": answer.status_code, "path": path},
        )
    return answer.json()
