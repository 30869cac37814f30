"""Structured JSON logging with a request id, configured once per entry point.

Entry points choose where records go: the CLI writes them to a file under the home
(``<home>/logs/entai.log``) and to the console only when asked (``-v``). Every record
is redacted first (:mod:`entai.shared.core._redaction`): configured secrets, URL
passwords, bearer and entai tokens never reach a handler.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from io import TextIOWrapper
from pathlib import Path

from entai.shared.core._redaction import add_redacting_filter, install_redaction, redact_value

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
            # Private attributes are other libraries' bookkeeping (Ray's log record
            # factory stamps every record of the process with _ray_timestamp_ns).
            if key not in _STANDARD_ATTRS and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already formatted (and redacted) by the redacting filter
            payload["exc"] = record.exc_text
        return json.dumps(redact_value(payload), default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        return


class _LogFileHandler(logging.FileHandler):
    """Appends to a file, creating it (and its directory) at the first record only."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self) -> TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


# Libraries whose INFO records are one line per HTTP request or file lock: kept out of
# the logs unless the level is DEBUG.
_CHATTY = ("httpx", "httpcore", "urllib3", "filelock")


def configure_logging(
    level: str = "INFO", *, log_file: Path | None = None, console: bool = True
) -> None:
    """Send log records, as JSON lines, to ``log_file`` and/or the console (stderr).

    Called once per entry point; calling it again replaces the handlers it installed
    (a later call may name another file), never anyone else's. Installs the process's
    redaction (:func:`~entai.shared.core._redaction.install_redaction`) and a
    redacting filter on each handler.

    Args:
        level: Root level (``DEBUG``, ``INFO``...). Above DEBUG, the per-request INFO
            records of HTTP clients and file locks are left out.
        log_file: Append here (created at the first record); None for no file.
        console: Also write to stderr.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = []
    if console:
        handlers.append(_StderrHandler())
    if log_file is not None:
        handlers.append(_LogFileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        add_redacting_filter(handler)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    install_redaction()
    chatty_level = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in _CHATTY:
        logging.getLogger(name).setLevel(chatty_level)
