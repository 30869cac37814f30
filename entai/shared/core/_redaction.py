"""Redaction of credentials from text: log records, exception messages, error bodies.

Three kinds of secret are recognised:

- the values this process was told are secret (:func:`register_secret`; the settings
  register theirs when they are built or unpickled, the key resolvers the keys they
  read), replaced by ``***`` wherever they appear. Values shorter than
  :data:`MIN_SECRET_CHARS` are not registered: redacting every ``entai`` would make
  logs unreadable and hides nothing a guess would not find;
- credentials by their shape: the password of a URL (``postgresql://entai:***@host/db``),
  ``password=``/``token=``-like query and DSN parameters, ``Authorization: Bearer``
  values and entai API tokens (``entai_<id>_***``: the token id is public, its secret
  is not);
- in 5xx response bodies only, ``host:port`` of the services behind (the log keeps them).

:class:`RedactingFilter` applies this to log records; :func:`install_redaction` puts it
in front of every record the process creates (a log record factory), so records of
entai and of the libraries it calls are redacted whatever handler writes them: entai's
JSON files and console, or Ray's worker logs in the session directory.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "RedactingFilter",
    "add_redacting_filter",
    "install_redaction",
    "redact",
    "redact_hosts",
    "redact_url",
    "redact_value",
    "register_secret",
    "register_secrets",
    "register_url_secrets",
    "registered_secret_count",
]

REDACTED = "***"
MIN_SECRET_CHARS = 8


class _Registry:
    """The secret values of this process and the one pattern that finds them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.factory_installed = False

    def add(self, text: str) -> None:
        with self.lock:
            if text in self.values:
                return
            self.values.add(text)
            # Longest first: a secret that contains another is replaced whole.
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(s) for s in ordered))


_REGISTRY = _Registry()

# scheme://user:password@  (the user stays, the password goes)
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@'\"]*:)[^\s/@'\"]+@")
# password=..., token=... in query strings and libpq DSNs (key=value key=value)
_PARAM = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|token|access_token|secret|api_key|apikey|sig)=)"
    r"(?P<value>'[^']*'|[^\s&'\"]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE)
# A bearer credential: 16 characters or more (shorter words are prose: "bearer token").
# An entai API token (entai.shared.governance tokens): entai_<12 hex id>_<43 secret chars>.
_ENTAI_TOKEN = re.compile(r"(?P<head>\bentai_[0-9a-f]{12}_)[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_HOST_PORT = re.compile(
    r"(?<![\w.:-])(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]"
    r"|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+):\d{1,5}\b"
)


def register_secret(value: str | bytes | None) -> None:
    """Redact ``value`` from this process's logs and error texts from now on.

    None, and values shorter than :data:`MIN_SECRET_CHARS`, are ignored.
    """
    if value is None:
        return
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    text = text.strip()
    if len(text) < MIN_SECRET_CHARS:
        return
    _REGISTRY.add(text)


def register_url_secrets(url: str | None) -> None:
    """Register the password of ``url`` and, for URLs whose path is the secret (webhooks),
    its path and query."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        register_secret(url)
        return
    register_secret(password)
    for match in _PARAM.finditer(url):
        register_secret(match["value"].strip("'"))
    if parts.scheme in {"http", "https"}:
        register_secret(url)
        register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-shaped substrings replaced."""
    pattern = _REGISTRY.pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)
    if "=" in text:
        text = _PARAM.sub(lambda m: f"{m['head']}{REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: f"{m['head']}{REDACTED}", text)
    if "entai_" in text:
        text = _ENTAI_TOKEN.sub(lambda m: f"{m['head']}{REDACTED}", text)
    return text


def redact_url(url: str) -> str:
    """A URL fit to print: its password and secret parameters replaced by ``***``.

    ``postgresql://entai:s3cret@db:5432/mlflow`` becomes
    ``postgresql://entai:***@db:5432/mlflow``.
    """
    return redact(url)


def redact_hosts(text: str) -> str:
    """``text`` without ``host:port`` pairs (for the bodies of 5xx answers)."""
    return _HOST_PORT.sub("<host>", text)


def redact_value(value: Any, text: Callable[[str], str] = redact) -> Any:
    """``value`` with :func:`redact` (or ``text``) applied to every string inside it.

    Mappings, lists and tuples are copied; other values are returned as they are.
    """
    if isinstance(value, str):
        return text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, text) for v in value)
    return value


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys())
_EXC_FORMATTER = logging.Formatter()
_FILTER_MARK = "_entai_redacting"


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep what there is
        message = str(record.msg)
    record.msg, record.args = redact(message), ()
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redact(_EXC_FORMATTER.formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _STANDARD_ATTRS and not key.startswith("_"):
            setattr(record, key, redact_value(value))


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments, extras and exception text in place.

    The formatted exception replaces ``exc_info`` (as ``exc_text``): the traceback's
    messages are redacted like the rest. Never drops a record. Redacting twice changes
    nothing, so a record may pass several of these filters.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def add_redacting_filter(handler: logging.Handler) -> None:
    """Put a :class:`RedactingFilter` on ``handler`` unless it has one."""
    if not getattr(handler, _FILTER_MARK, False):
        handler.addFilter(RedactingFilter())
        setattr(handler, _FILTER_MARK, True)


def install_redaction() -> None:
    """Redact every log record this process creates (idempotent).

    Wraps the log record factory, keeping the one in place (Ray stamps its records
    through it): records are redacted when they are made, before any handler, filter
    or formatter sees them. A logger adds ``extra`` attributes after the factory, so
    the root logger's handlers (entai's, or Ray's in a worker) also get a
    :class:`RedactingFilter`, which redacts those too.
    """
    with _REGISTRY.lock:
        for handler in logging.getLogger().handlers:
            add_redacting_filter(handler)
        if _REGISTRY.factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _REGISTRY.factory_installed = True


def registered_secret_count() -> int:
    """How many secret values this process redacts (for tests and diagnostics)."""
    return len(_REGISTRY.values)


def register_secrets(values: Iterable[str | bytes | None]) -> None:
    """:func:`register_secret` for each value."""
    for value in values:
        register_secret(value)
