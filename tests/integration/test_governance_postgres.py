"""Governance state in PostgreSQL (tokens, bootstrap marker, policy versions, the audit
log) on the machine's real server: database ``test`` on 127.0.0.1:5432, tables under a
prefix unique to each test, dropped afterwards. No Ray.

The audit log in PostgreSQL must resist what the file log resists: a row deleted and
the rest renumbered with recomputed plain SHA-256 hashes, a tail cut off, an entry
edited, a second writer; its bundles verify with the audit key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entai.shared.core import AuditIntegrityError, ConflictError
from entai.shared.governance import (
    GENESIS_HASH,
    MemoryAnchorStore,
    Policy,
    PostgresAnchorStore,
    PostgresAuditLog,
    PostgresPolicyStore,
    PostgresTokenStore,
    canonical_json,
    verify_bundle,
)

DSN = "postgresql://postgres@127.0.0.1:5432/test"
KEY = b"integration-audit-key-0123456789abcdef"


def _connect() -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(DSN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL database 'test' is not reachable at 127.0.0.1:5432 ({exc}); this "
            "test needs the real server (.ci/run starts it)",
            pytrace=False,
        )
    conn.autocommit = True
    return conn


@pytest.fixture
def prefix() -> Iterator[str]:
    """A table prefix unique to this test; its tables are dropped afterwards."""
    prefix = f"entai_test_{uuid.uuid4().hex[:8]}_"
    conn = _connect()
    try:
        yield prefix
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",))
            for (table,) in cur.fetchall():
                cur.execute(f'DROP TABLE IF EXISTS "{table}"')
        conn.close()


def _sql(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def _log(prefix: str, anchors: Any = None) -> PostgresAuditLog:
    return PostgresAuditLog(
        DSN,
        key=KEY,
        anchors=anchors or PostgresAnchorStore(DSN, table=f"{prefix}anchors"),
        table_prefix=prefix,
    )


def _fill(log: PostgresAuditLog, n: int) -> None:
    for i in range(n):
        log.append(principal="alice", action="tokens:create", resource=f"r{i}", decision="allow")


def test_tokens_survive_a_restart_and_bootstrap_happens_once(prefix: str) -> None:
    store = PostgresTokenStore(DSN, table_prefix=prefix)
    assert store.bootstrapped() is None
    admin_token, admin = store.bootstrap("admin")
    user_token, user = store.create("alice")
    store.revoke(user.token_id)
    store.close()

    reopened = PostgresTokenStore(DSN, table_prefix=prefix)
    assert reopened.verify(admin_token) == "admin"
    assert reopened.get(user.token_id) == reopened.list()[1]
    assert reopened.get(user.token_id).state(admin.created_at) == "revoked"  # type: ignore[union-attr]
    marker = reopened.bootstrapped()
    assert marker is not None and marker["token_id"] == admin.token_id
    with pytest.raises(ConflictError, match=f"already created \\({admin.token_id} for admin"):
        reopened.bootstrap("admin")
    # The refused bootstrap left no token behind, in memory or in the table.
    assert len(reopened.list()) == 2
    assert _sql(f'SELECT count(*) FROM "{prefix}tokens"') == [(2,)]
    assert "postgresql://" not in reopened.name
    del user_token
    reopened.close()


def test_policy_versions_the_file_seeds_and_a_newer_file_wins(prefix: str) -> None:
    store = PostgresPolicyStore(DSN, table_prefix=prefix)
    assert store.load(None, "nothing") is None
    seed = Policy.default()
    assert store.load(seed, "file a") == seed
    changed = seed.with_principal("carol", ["analyst"])
    store.save(changed, "governance service")
    reopened = PostgresPolicyStore(DSN, table_prefix=prefix)
    # The stored version (2) is newer than the file's (1): the change survives.
    assert reopened.load(seed, "file a") == changed
    assert "carol" in reopened.load(None, "nothing").principals  # type: ignore[union-attr]
    newer_file = changed.with_principal("dave", ["analyst"]).with_principal("erin", ["analyst"])
    assert reopened.load(newer_file, "file b") == newer_file
    rows = _sql(f'SELECT version, source FROM "{prefix}policy" ORDER BY version')
    assert rows == [(1, "file a"), (2, "governance service"), (4, "file b")]
    store.close()
    reopened.close()


def test_the_audit_log_resumes_verifies_queries_and_exports(prefix: str) -> None:
    log = _log(prefix)
    _fill(log, 5)
    log.close()
    again = _log(prefix)
    assert again.sealed is None and again.last_seq == 5
    entry = again.append(principal="bob", action="audit:export", resource="audit", decision="allow")
    assert entry.seq == 6
    report = again.verify()
    assert report.ok and report.entries == 6 and report.anchored_seq == 6
    assert [e.seq for e in again.query(principal="alice")] == [1, 2, 3, 4, 5]
    assert [e.seq for e in again.query(limit=2)] == [5, 6]
    bundle = again.export(exported_by="bob")
    assert verify_bundle(bundle, KEY).ok
    # The stored lines are the file log's lines: seq order, chained, sizes add up.
    rows = _sql(f'SELECT seq, line, end_offset FROM "{prefix}audit_log" ORDER BY seq')
    assert json.loads(rows[0][1])["prev_hash"] == GENESIS_HASH
    assert rows[-1][2] == sum(len(r[1].encode()) for r in rows)


def test_two_writers_follow_each_other(prefix: str) -> None:
    anchors = PostgresAnchorStore(DSN, table=f"{prefix}anchors")
    first = _log(prefix, anchors)
    second = _log(prefix, anchors)
    _fill(first, 2)
    assert second.append(principal="x", action="a", resource="r", decision="allow").seq == 3
    assert first.append(principal="y", action="a", resource="r", decision="allow").seq == 4
    assert first.verify().ok and first.verify().entries == 4


def _rewrite_without_entry(prefix: str, drop: int) -> None:
    """The attack: delete one row, renumber the rest, recompute plain SHA-256 hashes."""
    rows = _sql(f'SELECT line FROM "{prefix}audit_log" ORDER BY seq')
    kept = [json.loads(r[0]) for i, r in enumerate(rows, start=1) if i != drop]
    _sql(f'DELETE FROM "{prefix}audit_log"')
    prev, end = GENESIS_HASH, 0
    for seq, data in enumerate(kept, start=1):
        body = {k: v for k, v in data.items() if k != "hash"} | {"seq": seq, "prev_hash": prev}
        digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        line = canonical_json({**body, "hash": digest}) + "\n"
        end += len(line.encode())
        _sql(
            f'INSERT INTO "{prefix}audit_log" (seq, line, end_offset) VALUES (%s, %s, %s)',
            (seq, line, end),
        )
        prev = digest


def test_a_deleted_renumbered_rehashed_entry_is_found_and_the_log_seals(prefix: str) -> None:
    log = _log(prefix)
    _fill(log, 6)
    log.close()
    _rewrite_without_entry(prefix, drop=3)
    report = _log(prefix).verify()
    assert not report.ok and report.first_bad_position == 1
    reopened = _log(prefix)
    assert reopened.sealed is not None
    with pytest.raises(AuditIntegrityError, match="refuses new entries"):
        reopened.append(principal="x", action="a", resource="r", decision="allow")


def test_a_cut_tail_and_an_edited_entry_are_found(prefix: str) -> None:
    log = _log(prefix)
    _fill(log, 4)
    log.close()
    _sql(f'DELETE FROM "{prefix}audit_log" WHERE seq = 4')
    cut = _log(prefix)
    assert cut.sealed is not None and "entries deleted" in cut.sealed
    assert not cut.verify().ok

    other = prefix + "b_"
    try:
        log = _log(other)
        _fill(log, 3)
        line = _sql(f'SELECT line FROM "{other}audit_log" WHERE seq = 2')[0][0]
        _sql(
            f'UPDATE "{other}audit_log" SET line = %s WHERE seq = 2',
            (line.replace('"alice"', '"mallory"'),),
        )
        report = _log(other).verify()
        assert not report.ok and report.first_bad_position == 2
    finally:
        for table in ("audit_log", "anchors"):
            _sql(f'DROP TABLE IF EXISTS "{other}{table}"')


def test_rows_without_an_anchor_seal_the_log(prefix: str, tmp_path: Path) -> None:
    _fill(_log(prefix), 2)
    fresh = _log(prefix, MemoryAnchorStore())  # the anchor store was swapped or emptied
    assert fresh.sealed is not None and "no anchor" in fresh.sealed
