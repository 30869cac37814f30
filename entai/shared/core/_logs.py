"""Structured JSON logging with a request id, configured once per entry point."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["JsonFormatter", "configure_logging", "new_request_id", "request_context", "request_id"]

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "entai_request_id", default=None
)
_HANDLER_MARK = "_entai_json_handler"
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


def new_request_id() -> str:
    """Return a fresh, unguessable request id."""
    return uuid.uuid4().hex


def request_id() -> str | None:
    """The request id bound to the current context, if any."""
    return _REQUEST_ID.get()


@contextmanager
def request_context(rid: str | None = None) -> Iterator[str]:
    """Bind a request id to log records emitted inside the block."""
    value = rid or new_request_id()
    token = _REQUEST_ID.set(value)
    try:
        yield value
    finally:
        _REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _REQUEST_ID.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        return


def configure_logging(level: str = "INFO") -> None:
    """Install the JSON handler on the root logger; calling again only sets the level."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
