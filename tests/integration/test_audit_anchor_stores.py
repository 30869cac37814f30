"""Audit anchor stores against their contract, PostgreSQL on the machine's real server.

The same checks run on the file store and on PostgreSQL (database ``test`` on
127.0.0.1:5432, a table unique to the test, dropped afterwards); then an audit log
anchored in PostgreSQL goes through the attacks a lake writer can make.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entai.shared.core import AuditIntegrityError, ServiceUnavailableError
from entai.shared.governance import (
    AnchorStore,
    AuditLog,
    FileAnchorStore,
    PostgresAnchorStore,
    canonical_json,
    sign_anchor,
)

DSN = "postgresql://postgres@127.0.0.1:5432/test"
KEY = b"integration-audit-key-0123456789abcdef"


def _connect() -> Any:
    import psycopg2

    try:
        return psycopg2.connect(DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL database 'test' is not reachable at 127.0.0.1:5432 ({exc}); this "
            "test needs the real server (.ci/run starts it)",
            pytrace=False,
        )


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A table name unique to this test; the table is dropped afterwards."""
    table = f"entai_test_anchors_{uuid.uuid4().hex[:10]}"
    conn = _connect()
    conn.autocommit = True
    try:
        yield table
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


@pytest.fixture(params=["file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnchorStore]:
    if request.param == "file":
        yield FileAnchorStore(tmp_path / "home" / "audit_anchor.json")
        return
    table = request.getfixturevalue("pg_table")
    pg = PostgresAnchorStore(DSN, table=table, log_id="contract")
    yield pg
    pg.close()


def _anchor(seq: int, digest: str = "a" * 64) -> Any:
    return sign_anchor(KEY, seq=seq, digest=digest, keyed_from=1, size=100 * seq)


def test_store_contract_read_what_was_written(store: AnchorStore) -> None:
    assert store.read() is None
    first, second = _anchor(1), _anchor(2, "b" * 64)
    store.write(first)
    assert store.read() == first
    store.write(second)
    store.write(second)  # the same anchor again (close after the last append) is fine
    assert store.read() == second
    assert "postgresql://" not in store.name


def test_postgres_refuses_to_move_an_anchor_back_or_swap_its_entry(pg_table: str) -> None:
    store = PostgresAnchorStore(DSN, table=pg_table, log_id="monotonic")
    other_log = PostgresAnchorStore(DSN, table=pg_table, log_id="another")
    store.write(_anchor(5))
    other_log.write(_anchor(1))
    with pytest.raises(AuditIntegrityError, match="at entry 5"):
        store.write(_anchor(4))
    with pytest.raises(AuditIntegrityError):
        store.write(_anchor(5, "c" * 64))
    kept = store.read()
    assert kept is not None and (kept.seq, kept.hash) == (5, "a" * 64)
    assert other_log.read().seq == 1  # type: ignore[union-attr]
    store.close()
    other_log.close()


def test_postgres_reconnects_after_losing_its_connection(pg_table: str) -> None:
    store = PostgresAnchorStore(DSN, table=pg_table)
    store.write(_anchor(1))
    store._db._conn.close()  # the server or the network dropped it
    store.write(_anchor(2))
    assert store.read().seq == 2  # type: ignore[union-attr]
    store.close()


def test_an_unreachable_postgres_is_a_clear_service_error_without_the_dsn() -> None:
    store = PostgresAnchorStore(
        "postgresql://postgres:pw-not-shown@127.0.0.1:1/test", connect_timeout_s=2
    )
    with pytest.raises(ServiceUnavailableError) as info:
        store.read()
    assert "not reachable" in info.value.message and "pw-not-shown" not in info.value.message


def _history(path: Path, store: AnchorStore, n: int = 6) -> None:
    log = AuditLog(path, key=KEY, anchors=store, fsync=False)
    for i in range(n):
        log.append(principal="admin", action=f"act-{i}", resource="r", decision="allow")
    log.close()


def test_a_log_anchored_in_postgres_survives_restarts_and_catches_a_lake_writer(
    tmp_path: Path, pg_table: str
) -> None:
    path = tmp_path / "lake" / "audit" / "audit.jsonl"
    store = PostgresAnchorStore(DSN, table=pg_table, log_id="attacked")
    _history(path, store, 3)
    _history(path, store, 3)  # a restart
    honest = AuditLog(path, key=KEY, anchors=store).verify()
    assert (honest.ok, honest.entries, honest.anchored_seq) == (True, 6, 6), honest.problem

    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))  # cut the tail; the lake has no anchor to fix
    report = AuditLog(path, key=KEY, anchors=store).verify()
    assert (report.ok, report.first_bad_position) == (False, 5)
    assert "tail truncated" in report.problem

    rows = [json.loads(line) for line in lines]
    rows[2]["principal"] = "mallory"  # an edit, with the tail back in place
    path.write_bytes(b"".join((canonical_json(r) + "\n").encode() for r in rows))
    edited = AuditLog(path, key=KEY, anchors=store)
    assert edited.sealed is not None  # the anchored entry is no longer where it was
    report = edited.verify()
    assert (report.ok, report.first_bad_position) == (False, 3)
    assert "does not match its MAC" in report.problem
    store.close()
