"""The PostgreSQL connection every governance store holds, and its table names.

:class:`PostgresConnection` is one lazily opened connection (autocommit, reconnected
once when the server dropped it) that creates the store's tables when it opens. The
policy, token and audit-log stores (:mod:`entai.shared.governance._state_postgres`,
:mod:`entai.shared.governance._audit_postgres`) and the audit anchor store
(:mod:`entai.shared.governance._audit_anchor_postgres`) each hold one. The DSN is a
secret: it is never logged nor put in an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from entai.shared.core import ConfigError, ServiceUnavailableError

__all__ = ["PostgresConnection", "check_prefix"]

logger = logging.getLogger(__name__)

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class PostgresConnection:
    """One lazily opened PostgreSQL connection that runs statements for a store.

    Args:
        dsn: libpq connection string or URI (a secret).
        what: What the store is, for messages (``governance tokens``).
        schema: SQL run once per new connection (``CREATE TABLE IF NOT EXISTS ...``).
        connect_timeout_s: How long to wait for the server.
        details: The store, in the details of an unreachable error (``{"store": what}``
            when not given).
    """

    def __init__(
        self,
        dsn: str,
        what: str,
        schema: list[Any],
        *,
        connect_timeout_s: int = 5,
        details: Mapping[str, str] | None = None,
    ) -> None:
        self._dsn = dsn
        self.what = what
        self._schema = schema
        self._timeout = connect_timeout_s
        self._details = dict(details) if details is not None else {"store": what}
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"PostgresConnection({self.what!r})"

    def close(self) -> None:
        """Close the connection (it is opened again on the next call)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> Any:
        # psycopg2 is imported here to keep it out of `import entai.shared` (a light path).
        import psycopg2

        conn = psycopg2.connect(self._dsn, connect_timeout=self._timeout)
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in self._schema:
                cur.execute(statement)
        return conn

    def _unreachable(self, exc: Exception) -> ServiceUnavailableError:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ServiceUnavailableError(
            f"{self.what} (PostgreSQL) is not reachable: "
            f"{type(exc).__name__} {first_line}".rstrip(),
            details=dict(self._details),
        )

    def run(self, statement: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Execute one statement (autocommit), reconnecting once if the connection was lost.

        Raises:
            ServiceUnavailableError: when the server cannot be reached.
        """
        import psycopg2

        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self._connect()
                with self._conn.cursor() as cur:
                    cur.execute(statement, params)
                    return list(cur.fetchall()) if cur.description else []
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if attempt == 2:
                    raise self._unreachable(exc) from None
                logger.warning("%s: PostgreSQL connection lost; reconnecting", self.what)
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction, committed on success, rolled back on error.

        Not retried: a transaction cut by a lost connection is rolled back by the server
        and raises ServiceUnavailableError here.
        """
        import psycopg2

        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.autocommit = False
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self.close()
            raise self._unreachable(exc) from None
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            self.close()
            raise self._unreachable(exc) from None
        except BaseException:
            conn.rollback()
            raise
        finally:
            if self._conn is not None:
                self._conn.autocommit = True


def check_prefix(prefix: str) -> str:
    """A table prefix that is a safe SQL identifier start.

    Raises:
        ConfigError: naming ``security.governance_store.table_prefix``.
    """
    if not _PREFIX.match(prefix):
        raise ConfigError(
            f"security.governance_store.table_prefix {prefix!r} must be lower-case letters, "
            "digits and _",
            details={"field": "security.governance_store.table_prefix"},
        )
    return prefix
