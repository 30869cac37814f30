"""One erasure at a time per store: the lock the erasure coordinator holds around a store.

Erasing rewrites what it finds (a lake file read, filtered and written back; online
rows found, then deleted). Two erasures of the same store at once could each rewrite a
file from the version before the other's rewrite and so bring back the rows the other
removed. The coordinator therefore holds a lock per store (``online``, ``offline``,
``raw``, ...) while it erases it: two erasures run store after store, never in the same
store together.

Which lock, by configuration:

* **PostgreSQL** (the governance store is PostgreSQL: the cluster configuration): a
  session-level ``pg_advisory_lock`` on the governance database. Every node, the CLI,
  the Serve replicas and the Ray tasks running erasures reach that database already,
  and the server releases the lock when the holder's connection drops (a crashed
  coordinator leaves no stale lock behind). An object store lake (``s3://``) has no
  lock of its own, which is why the lock is not kept in the lake.
* **A file lock** (files governance store and a local lake: the embedded configuration,
  one machine): ``flock`` on ``<lake>/_locks/erasure-<store>.lock``. The kernel releases
  it when the holder dies; it holds between processes and between threads (each
  acquisition opens the file anew). It is not reliable on NFS or SMB.

Any other configuration (an object store lake with a files governance store) has no
lock every process shares, and erasure refuses to run there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from entai.shared.core import ConfigError, ServiceUnavailableError
from entai.shared.data import Lake
from entai.shared.settings import EntaiSettings, PostgresGovernanceStoreSettings

__all__ = ["LOCK_DIRECTORY", "erasure_lock", "lock_kind"]

LOCK_DIRECTORY = "_locks"
"""Where the file locks live under a local lake (hidden from the lake's zones)."""

_POLL_S = 0.05


def lock_kind(settings: EntaiSettings) -> str:
    """``postgres`` or ``file``: which lock erasures take under ``settings``.

    Raises:
        ConfigError: neither a PostgreSQL governance store nor a local lake.
    """
    if isinstance(settings.security.governance_store, PostgresGovernanceStoreSettings):
        return "postgres"
    root = settings.lake.root
    if "://" not in root or root.startswith("file://"):
        return "file"
    raise ConfigError(
        "erasure needs a lock every process shares: use a PostgreSQL governance store "
        "with a lake in an object store",
        details={"field": "security.governance_store"},
    )


@contextmanager
def erasure_lock(settings: EntaiSettings, store: str, *, timeout_s: float = 900.0) -> Iterator[str]:
    """Hold the erasure lock of one store of the platform (see the module's rules).

    Args:
        settings: Platform settings (the lake root names the platform's stores).
        store: The store's name (``online``, ``offline``, ...).
        timeout_s: How long to wait for another erasure of the store to finish.

    Yields:
        The lock's kind (``postgres`` or ``file``).

    Raises:
        ConfigError: no shared lock under this configuration.
        ServiceUnavailableError: the lock stayed held for ``timeout_s`` or the
            PostgreSQL server is unreachable.
    """
    kind = lock_kind(settings)
    if kind == "postgres":
        governance = settings.security.governance_store
        assert isinstance(governance, PostgresGovernanceStoreSettings)
        with _postgres_lock(governance.dsn.get_secret_value(), settings, store, timeout_s):
            yield kind
        return
    lake = Lake(settings.lake.root)
    with _file_lock(Path(lake.path(LOCK_DIRECTORY, f"erasure-{store}.lock")), timeout_s):
        yield kind


def _lock_id(settings: EntaiSettings, store: str) -> int:
    """A signed 64-bit advisory lock id for one store of one platform (its lake root)."""
    digest = hashlib.sha256(f"entai-erasure\0{settings.lake.root}\0{store}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _busy(store: str, timeout_s: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"another erasure of store {store!r} held its lock for {timeout_s:g} s; retry later",
        details={"store": store, "timeout_s": timeout_s},
    )


@contextmanager
def _postgres_lock(
    dsn: str, settings: EntaiSettings, store: str, timeout_s: float
) -> Iterator[None]:
    import psycopg2
    import psycopg2.errors

    try:
        conn = psycopg2.connect(dsn, connect_timeout=5)
    except psycopg2.Error as exc:
        raise ServiceUnavailableError(
            f"the erasure lock's database (PostgreSQL) is not reachable: {type(exc).__name__}",
            details={"store": store},
        ) from exc
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = %s", (f"{int(timeout_s * 1000)}ms",))
            try:
                cur.execute("SELECT pg_advisory_lock(%s)", (_lock_id(settings, store),))
            except psycopg2.errors.LockNotAvailable as exc:
                raise _busy(store, timeout_s) from exc
        yield
    finally:
        conn.close()  # ends the session: the server releases its advisory locks


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(path.stem.removeprefix("erasure-"), timeout_s) from None
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
