from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from entai.shared.core import AuditIntegrityError, ConfigError, InvalidInputError
from entai.shared.governance import GENESIS_HASH, AuditLog

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
N = 6


def _write(path: Path, n: int = N) -> AuditLog:
    log = AuditLog(path, fsync=False)
    for i in range(n):
        log.append(
            principal=["alice", "bob"][i % 2],
            action=["features:read", "tokens:create", "models:approve"][i % 3],
            resource=f"res-{i}",
            decision="deny" if i == 4 else "allow",
            request_id=f"req-{i}",
            details={"i": i, "note": "é"},
            ts=T0 + timedelta(minutes=i),
        )
    return log


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit" / "audit.jsonl"
    _write(path).close()
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _failure(path: Path) -> tuple[int | None, str]:
    report = AuditLog(path, fsync=False).verify()
    assert not report.ok
    return report.first_bad_position, report.problem


def _sealed(body: dict[str, object]) -> bytes:
    """Hash a forged entry exactly as documented: sha256 of canonical JSON minus hash."""

    def canonical(d: dict[str, object]) -> str:
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    full = {**body, "hash": hashlib.sha256(canonical(body).encode()).hexdigest()}
    return (canonical(full) + "\n").encode()


def test_untouched_log_verifies_and_entries_chain(log_path: Path) -> None:
    log = AuditLog(log_path, fsync=False)
    report = log.verify_or_raise()
    assert report.ok and report.entries == N and report.first_bad_position is None
    entries = log.query()
    assert [e.seq for e in entries] == list(range(1, N + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[0].details == {"i": 0, "note": "é"}


def test_empty_log_verifies(tmp_path: Path) -> None:
    assert AuditLog(tmp_path / "a.jsonl", fsync=False).verify().ok


def test_reopened_log_continues_the_chain(log_path: Path) -> None:
    log = AuditLog(log_path, fsync=False)
    entry = log.append(principal="carol", action="x", resource="r", decision="allow")
    assert entry.seq == N + 1
    assert entry.prev_hash == AuditLog(log_path).query()[N - 1].hash
    assert log.verify().ok


def test_every_single_byte_edit_is_found_at_its_line(log_path: Path) -> None:
    original = log_path.read_bytes()
    lines = _lines(log_path)
    start = sum(len(line) for line in lines[:2])
    for offset in range(start, start + len(lines[2]) - 1):
        data = bytearray(original)
        data[offset] = ord("x") if data[offset] != ord("x") else ord("y")
        log_path.write_bytes(bytes(data))
        position, _ = _failure(log_path)
        assert position == 3, (offset, bytes(data[offset - 5 : offset + 5]))


def test_deleted_entry_is_found(log_path: Path) -> None:
    lines = _lines(log_path)
    log_path.write_bytes(b"".join(lines[:2] + lines[3:]))
    position, problem = _failure(log_path)
    assert position == 3
    assert "deleted" in problem


def test_swapped_entries_are_found(log_path: Path) -> None:
    lines = _lines(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    log_path.write_bytes(b"".join(lines))
    assert _failure(log_path)[0] == 2


def test_inserted_forged_entry_is_found(log_path: Path) -> None:
    lines = _lines(log_path)
    third = json.loads(lines[2])
    forged = {k: v for k, v in third.items() if k != "hash"}
    forged |= {"principal": "mallory", "prev_hash": "f" * 64}
    log_path.write_bytes(b"".join([*lines[:2], _sealed(forged), *lines[2:]]))
    position, problem = _failure(log_path)
    assert position == 3
    assert "chain" in problem


def test_appended_entry_with_wrong_chain_is_found(log_path: Path) -> None:
    last = json.loads(_lines(log_path)[-1])
    forged = {k: v for k, v in last.items() if k != "hash"}
    forged |= {"seq": N + 1, "principal": "mallory", "prev_hash": "1" * 64}
    with log_path.open("ab") as out:
        out.write(_sealed(forged))
    position, _ = _failure(log_path)
    assert position == N + 1


def _append_well_chained_forgery(path: Path) -> None:
    last = json.loads(_lines(path)[-1])
    forged = {k: v for k, v in last.items() if k != "hash"}
    forged |= {"seq": last["seq"] + 1, "principal": "mallory", "prev_hash": last["hash"]}
    with path.open("ab") as out:
        out.write(_sealed(forged))


def test_well_chained_entry_appended_behind_the_writer_is_caught_by_the_head(
    log_path: Path,
) -> None:
    log = AuditLog(log_path, fsync=False)
    _append_well_chained_forgery(log_path)
    report = log.verify()
    assert not report.ok and report.first_bad_position == N + 1
    assert "not anchored" in report.problem


def test_one_unanchored_entry_found_at_start_is_adopted_visibly(log_path: Path) -> None:
    """A crash between the log and head writes looks like this; the adoption is audited."""
    _append_well_chained_forgery(log_path)
    log = AuditLog(log_path, fsync=False)
    assert log.verify().ok
    recovered = log.query(action="audit:recovered")
    assert [(e.seq, e.details["adopted_seq"]) for e in recovered] == [(N + 2, N + 1)]


def test_truncated_tail_is_found_and_raise_names_the_line(log_path: Path) -> None:
    log_path.write_bytes(b"".join(_lines(log_path)[:-2]))
    with pytest.raises(AuditIntegrityError) as info:
        AuditLog(log_path, fsync=False).verify_or_raise()
    assert info.value.details["position"] == N - 1
    assert f"line {N - 1}" in info.value.message


def test_torn_last_line_from_a_crash_is_cut_off_on_resume(log_path: Path) -> None:
    with log_path.open("ab") as out:
        out.write(b'{"action":"half-writ')
    log = AuditLog(log_path, fsync=False)
    entry = log.append(principal="p", action="a", resource="r", decision="allow")
    assert entry.seq == N + 1
    assert log.verify().ok


def test_query_filters_by_principal_action_and_time(log_path: Path) -> None:
    log = AuditLog(log_path, fsync=False)
    assert [e.seq for e in log.query(principal="alice")] == [1, 3, 5]
    assert [e.seq for e in log.query(action="tokens:create")] == [2, 5]
    window = log.query(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert [e.seq for e in window] == [3, 4]
    assert [e.seq for e in log.query(principal="bob", limit=2)] == [4, 6]
    with pytest.raises(InvalidInputError):
        log.query(since=datetime(2026, 1, 1))


def test_unserialisable_details_and_remote_paths_are_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", fsync=False)
    with pytest.raises(InvalidInputError):
        log.append(principal="p", action="a", resource="r", decision="x", details={"o": object()})
    assert log.verify().ok and log.last_seq == 0
    with pytest.raises(ConfigError):
        AuditLog.in_lake("s3://bucket/lake")
