"""Where drift alerts go: pluggable sinks, and the audit log through governance.

A sink is anything with ``send(event)``; an event is a JSON-able mapping (model,
feature, method, window id, previous and new level, when). :class:`LogSink` logs it,
:class:`WebhookSink` POSTs it as JSON with a timeout and bounded retries,
:class:`FanoutSink` sends to several; :func:`configured_sink` is the one the monitor
uses: the log, plus each webhook of ``monitoring.webhooks``. Sinks are plain picklable
objects, so they can be passed to the DriftMonitor actor. A webhook's URL and headers
are secrets: its ``repr``, logs and errors show only the URL's scheme and host. Events
carry the window id: a receiver can drop the duplicate that an actor restart in the
middle of a call may send (at-least-once).

:class:`GovernanceAuditor` writes to the audit log of the ``entai-governance`` actor
when Ray is initialised and that actor exists; otherwise it logs and carries on.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

from entai.actors.governance import Auditor, GovernanceAuditor
from entai.shared.core import EntaiError, InvalidInputError, ServiceUnavailableError
from entai.shared.settings import MonitoringSettings

__all__ = [
    "AlertSink",
    "Auditor",
    "FanoutSink",
    "GovernanceAuditor",
    "LogSink",
    "WebhookSink",
    "configured_sink",
]

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class AlertSink(Protocol):
    """Receives alert events."""

    def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one event or raise an :class:`~entai.shared.core._errors.EntaiError`."""


class LogSink:
    """Logs each event at ``level`` (WARNING by default) with the event as extras."""

    def __init__(self, level: int = logging.WARNING) -> None:
        self.level = level

    def __repr__(self) -> str:
        return f"LogSink(level={logging.getLevelName(self.level)})"

    def send(self, event: Mapping[str, Any]) -> None:
        """Log the event."""
        logger.log(self.level, "drift alert", extra={"alert": dict(event)})


class WebhookSink:
    """POSTs each event as JSON; retries timeouts, connection errors, 408/429/5xx.

    Args:
        url: http(s) endpoint (a secret: a chat webhook's path is its credential); only
            its scheme and host are ever logged.
        timeout_s: Per-attempt timeout.
        retries: Extra attempts after the first.
        backoff_s: Sleep before retry i is ``backoff_s * 2**i``.
        headers: Extra headers (e.g. an Authorization header); never logged.
    """

    def __init__(
        self,
        url: str | SecretStr,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        headers: Mapping[str, str | SecretStr] | None = None,
    ) -> None:
        url = url if isinstance(url, SecretStr) else SecretStr(url)
        parts = urlsplit(url.get_secret_value())
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InvalidInputError(
                "webhook url must be an http(s) URL with a host", details={"field": "url"}
            )
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise InvalidInputError(
                "webhook needs timeout_s > 0, retries >= 0, backoff_s >= 0",
                details={"fields": ["timeout_s", "retries", "backoff_s"]},
            )
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers: dict[str, SecretStr] = {
            "Content-Type": SecretStr("application/json"),
            **{
                k: v if isinstance(v, SecretStr) else SecretStr(v)
                for k, v in (headers or {}).items()
            },
        }
        self._target = f"{parts.scheme}://{parts.hostname}"

    def __repr__(self) -> str:
        return f"WebhookSink(target={self._target!r}, retries={self.retries})"

    def send(self, event: Mapping[str, Any]) -> None:
        """POST the event.

        Raises:
            ServiceUnavailableError: when every attempt failed, or the endpoint refused
                the event with a non-retryable status.
        """
        body = json.dumps(dict(event), default=str).encode()
        headers = {k: v.get_secret_value() for k, v in self._headers.items()}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.url.get_secret_value(), data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                    response.read()
                    return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code not in _RETRYABLE_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = type(exc).__name__
            logger.info(
                "webhook attempt failed",
                extra={"target": self._target, "attempt": attempt + 1, "error": last},
            )
        raise ServiceUnavailableError(
            f"webhook {self._target} did not accept the alert: {last}",
            details={"target": self._target, "error": last, "attempts": self.retries + 1},
        )


class FanoutSink:
    """Sends each event to every sink; one failing does not stop the others.

    Raises:
        ServiceUnavailableError: after trying all, when any of them failed.
    """

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def __repr__(self) -> str:
        return f"FanoutSink({self.sinks!r})"

    def send(self, event: Mapping[str, Any]) -> None:
        """Deliver to every sink."""
        failed: list[str] = []
        for sink in self.sinks:
            try:
                sink.send(event)
            except EntaiError as exc:
                failed.append(f"{sink!r}: {exc.message}")
        if failed:
            raise ServiceUnavailableError(
                f"{len(failed)} alert sink(s) failed", details={"failed": failed}
            )


def configured_sink(settings: MonitoringSettings) -> AlertSink:
    """The monitor's sink: the log, plus each of ``settings.webhooks`` when there are any."""
    if not settings.webhooks:
        return LogSink()
    webhooks = [
        WebhookSink(hook.url, timeout_s=hook.timeout_s, retries=hook.retries, headers=hook.headers)
        for hook in settings.webhooks
    ]
    return FanoutSink([LogSink(), *webhooks])
