"""The keyed, anchored audit log: honest logs verify; a lake writer's rewrites do not.

The attacker in these tests can rewrite every byte of the log and its old ``.head``
file (the lake), and knows the record format, but not the audit key. Where a test
also replaces the anchor, it plays an attacker who can reach that store too, still
without the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from entai.shared.core import AuditIntegrityError, ConfigError, InvalidInputError
from entai.shared.governance import (
    GENESIS_HASH,
    KEYED_ACTION,
    Anchor,
    AuditLog,
    FileAnchorStore,
    MemoryAnchorStore,
    VerifyReport,
    canonical_json,
    derive_key,
    entry_mac,
    legacy_entry_hash,
    sign_anchor,
    verify_bundle,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
N = 6
KEY = b"the-audit-key-of-this-test-0123456789"
WRONG_KEY = b"a-key-the-attacker-made-up-987654321"

Hasher = Callable[[dict[str, Any]], str]


def plain_sha256(body: dict[str, Any]) -> str:
    """What the documented format looked like before it was keyed: anyone can compute it."""
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def hmac_under(key: bytes) -> Hasher:
    return lambda body: entry_mac(body, derive_key(key, "entry"))


@pytest.fixture
def anchors(tmp_path: Path) -> FileAnchorStore:
    """The anchor file, under a home that is not the lake."""
    return FileAnchorStore(tmp_path / "home" / "audit_anchor.json", fsync=False)


def _open(path: Path, anchors: Any, *, key: bytes = KEY, **kwargs: Any) -> AuditLog:
    return AuditLog(path, key=key, anchors=anchors, fsync=False, **kwargs)


def _append(log: AuditLog, i: int) -> None:
    log.append(
        principal=["alice", "bob"][i % 2],
        action=["features:read", "tokens:create", "models:approve"][i % 3],
        resource=f"res-{i}",
        decision="deny" if i == 4 else "allow",
        request_id=f"req-{i}",
        details={"i": i, "note": "é"},
        ts=T0 + timedelta(minutes=i),
    )


def _write(path: Path, anchors: Any, n: int = N, start: int = 0) -> None:
    log = _open(path, anchors)
    for i in range(start, start + n):
        _append(log, i)
    log.close()


@pytest.fixture
def log_path(tmp_path: Path, anchors: FileAnchorStore) -> Path:
    path = tmp_path / "lake" / "audit" / "audit.jsonl"
    _write(path, anchors)
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(path)]


def _verify(path: Path, anchors: Any) -> VerifyReport:
    return _open(path, anchors).verify()


def _failure(path: Path, anchors: Any) -> tuple[int | None, str]:
    report = _verify(path, anchors)
    assert not report.ok
    return report.first_bad_position, report.problem


def _rechain(rows: list[dict[str, Any]], hasher: Hasher, start: int = 0) -> bytes:
    """Renumber every row and recompute prev_hash and hash from ``rows[start]`` on."""
    prev = GENESIS_HASH if start == 0 else rows[start - 1]["hash"]
    out = [canonical_json(r) + "\n" for r in rows[:start]]
    for i, row in enumerate(rows[start:], start=start + 1):
        body = {k: v for k, v in row.items() if k != "hash"} | {"seq": i, "prev_hash": prev}
        prev = hasher(body)
        out.append(canonical_json({**body, "hash": prev}) + "\n")
    return "".join(out).encode()


def _delete_and_rechain(path: Path, hasher: Hasher, *, from_start: bool) -> None:
    """The attack seen on main: delete entry 3, renumber, recompute, rewrite the .head."""
    rows = _rows(path)
    del rows[2]
    path.write_bytes(_rechain(rows, hasher, 0 if from_start else 2))
    last = json.loads(_lines(path)[-1])
    head = path.with_name(path.name + ".head")
    head.write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))


# -- honest logs -------------------------------------------------------------------


def test_untouched_log_verifies_entries_chain_and_the_anchor_covers_the_end(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    log = _open(log_path, anchors)
    report = log.verify_or_raise()
    assert (report.ok, report.entries, report.anchored_seq) == (True, N, N)
    assert report.legacy_entries == 0 and report.first_bad_position is None
    entries = log.query()
    assert [e.seq for e in entries] == list(range(1, N + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[0].details == {"i": 0, "note": "é"}
    body = {k: v for k, v in _rows(log_path)[0].items() if k != "hash"}
    assert entries[0].hash == hmac_under(KEY)(body) != plain_sha256(body)
    anchor = anchors.read()
    assert anchor is not None and (anchor.seq, anchor.hash) == (N, entries[-1].hash)
    assert anchor.size == log_path.stat().st_size


def test_empty_log_verifies(tmp_path: Path) -> None:
    assert _open(tmp_path / "a.jsonl", MemoryAnchorStore()).verify().ok


def test_an_honest_log_verifies_after_restarts_crashes_and_a_torn_line(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    path = tmp_path / "lake" / "audit.jsonl"
    _write(path, anchors, n=3)  # closed cleanly
    crashed = _open(path, anchors, anchor_every=4)
    for i in range(3, 6):
        _append(crashed, i)
    del crashed  # no close: entries 4..6 were written after the last anchor (3)
    assert anchors.read().seq == 3  # type: ignore[union-attr]
    with path.open("ab") as out:
        out.write(b'{"action":"half-writ')  # a crash in the middle of a write
    restarted = _open(path, anchors)
    _append(restarted, 6)
    restarted.close()
    report = _verify(path, anchors)
    assert (report.ok, report.entries, report.anchored_seq) == (True, 7, 7), report.problem
    assert [e.seq for e in AuditLog(path).query()] == list(range(1, 8))


def test_the_anchor_is_written_every_n_entries_and_on_close(tmp_path: Path) -> None:
    store = MemoryAnchorStore()
    log = _open(tmp_path / "a.jsonl", store, anchor_every=3)
    for i in range(5):
        _append(log, i)
    assert (store.writes, store.anchor.seq) == (1, 3)  # type: ignore[union-attr]
    log.close()
    assert (store.writes, store.anchor.seq) == (2, 5)  # type: ignore[union-attr]


def test_two_writers_of_one_log_take_turns_and_the_chain_holds(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    """The governance service and a local command: each follows the other's entries."""
    path = tmp_path / "a.jsonl"
    service, command = _open(path, anchors), _open(path, anchors)
    for i, writer in enumerate([service, command, service, service, command]):
        _append(writer, i)
    service.close()
    command.close()
    report = _verify(path, anchors)
    assert (report.ok, report.entries, report.anchored_seq) == (True, 5, 5), report.problem


# -- a lake writer's rewrites --------------------------------------------------------


@pytest.mark.parametrize("from_start", [True, False], ids=["every-hash", "from-the-gap"])
def test_deleting_renumbering_recomputing_sha256_and_rewriting_the_head_is_found(
    log_path: Path, anchors: FileAnchorStore, from_start: bool
) -> None:
    _delete_and_rechain(log_path, plain_sha256, from_start=from_start)
    position, problem = _failure(log_path, anchors)
    assert position == (1 if from_start else 3)
    assert "plain SHA-256" in problem and "audit key" in problem


@pytest.mark.parametrize("from_start", [True, False], ids=["every-hash", "from-the-gap"])
def test_the_same_rewrite_with_hmac_under_a_wrong_key_is_found(
    log_path: Path, anchors: FileAnchorStore, from_start: bool
) -> None:
    _delete_and_rechain(log_path, hmac_under(WRONG_KEY), from_start=from_start)
    position, problem = _failure(log_path, anchors)
    assert position == (1 if from_start else 3)
    assert "does not match its MAC" in problem


@pytest.mark.parametrize(
    "forge",
    [
        lambda seq, h, size: sign_anchor(WRONG_KEY, seq=seq, digest=h, keyed_from=1, size=size),
        lambda seq, h, size: Anchor(seq, h, 1, size, "2026-03-01T12:00:00+00:00", "0" * 64),
    ],
    ids=["anchor-under-a-wrong-key", "anchor-with-a-made-up-mac"],
)
def test_rewriting_the_log_and_replacing_the_anchor_file_is_found(
    log_path: Path, anchors: FileAnchorStore, forge: Callable[[int, str, int], Anchor]
) -> None:
    _delete_and_rechain(log_path, plain_sha256, from_start=False)
    last = _rows(log_path)[-1]
    anchors.path.write_text(forge(last["seq"], last["hash"], log_path.stat().st_size).to_json())
    position, problem = _failure(log_path, anchors)
    assert position == 3 and "plain SHA-256" in problem


def test_a_forged_anchor_alone_is_found(log_path: Path, anchors: FileAnchorStore) -> None:
    """Cut the tail and move the anchor back to the new end: the anchor's MAC gives it away."""
    kept = _lines(log_path)[:-2]
    log_path.write_bytes(b"".join(kept))
    last = json.loads(kept[-1])
    forged = sign_anchor(WRONG_KEY, seq=N - 2, digest=last["hash"], keyed_from=1, size=0)
    anchors.path.write_text(forged.to_json())
    position, problem = _failure(log_path, anchors)
    assert position is None and "not signed with the audit key" in problem


def test_truncating_the_tail_is_found_as_missing_anchored_entries(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    log_path.write_bytes(b"".join(_lines(log_path)[:-2]))
    with pytest.raises(AuditIntegrityError) as info:
        _open(log_path, anchors).verify_or_raise()
    assert info.value.details["position"] == N - 1
    assert f"entries {N - 1}..{N} are missing (tail truncated)" in info.value.message


def test_a_writer_that_finds_the_tail_cut_refuses_to_write_over_the_evidence(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    log_path.write_bytes(b"".join(_lines(log_path)[:-2]))
    log = _open(log_path, anchors)
    assert log.sealed is not None and "entries deleted" in log.sealed
    with pytest.raises(AuditIntegrityError, match="refuses new entries"):
        _append(log, 99)
    log.close()
    assert anchors.read().seq == N  # type: ignore[union-attr]
    assert _failure(log_path, anchors)[0] == N - 1


def test_deleting_the_anchor_is_found_and_seals_the_writer(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    anchors.path.unlink()
    position, problem = _failure(log_path, anchors)
    assert position is None and "no anchor" in problem
    assert "no anchor" in (_open(log_path, anchors).sealed or "")


def test_a_writer_with_another_key_refuses_to_write(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    log = _open(log_path, anchors, key=WRONG_KEY)
    assert "not signed with the audit key" in (log.sealed or "")
    with pytest.raises(AuditIntegrityError):
        _append(log, 99)
    report = log.verify()
    assert not report.ok and report.first_bad_position == 1


def test_every_single_byte_edit_is_found_at_its_line(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    original = log_path.read_bytes()
    lines = _lines(log_path)
    start = sum(len(line) for line in lines[:2])
    for offset in range(start, start + len(lines[2]) - 1):
        data = bytearray(original)
        data[offset] = ord("x") if data[offset] != ord("x") else ord("y")
        log_path.write_bytes(bytes(data))
        position, _ = _failure(log_path, anchors)
        assert position == 3, (offset, bytes(data[offset - 5 : offset + 5]))


def test_swapped_entries_are_found(log_path: Path, anchors: FileAnchorStore) -> None:
    lines = _lines(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    log_path.write_bytes(b"".join(lines))
    assert _failure(log_path, anchors)[0] == 2


def test_an_entry_appended_behind_the_writer_without_the_key_is_found(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    last = _rows(log_path)[-1]
    forged = {k: v for k, v in last.items() if k != "hash"}
    forged |= {"seq": N + 1, "principal": "mallory", "prev_hash": last["hash"]}
    with log_path.open("ab") as out:
        out.write((canonical_json({**forged, "hash": plain_sha256(forged)}) + "\n").encode())
    position, problem = _failure(log_path, anchors)
    assert position == N + 1 and "plain SHA-256" in problem
    assert "not MACed" in (_open(log_path, anchors).sealed or "")


# -- migration from an unkeyed log ---------------------------------------------------


def _write_legacy(path: Path, n: int) -> list[dict[str, Any]]:
    """A log as older homes have it: plain SHA-256 chain and a .head file, no anchor."""
    rows = []
    for i in range(n):
        ts = (T0 + timedelta(minutes=i)).isoformat(timespec="microseconds")
        rows.append(
            {
                "seq": i + 1,
                "ts": ts,
                "principal": "old",
                "action": "tokens:create",
                "resource": f"token:{i}",
                "decision": "allow",
                "request_id": None,
                "details": {},
                "prev_hash": "",
                "hash": "",
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_rechain(rows, legacy_entry_hash))
    last = json.loads(_lines(path)[-1])
    path.with_name(path.name + ".head").write_text(
        json.dumps({"seq": last["seq"], "hash": last["hash"]})
    )
    return [json.loads(line) for line in _lines(path)]


def test_a_legacy_log_is_taken_over_and_reported_as_legacy_unkeyed(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    path = tmp_path / "lake" / "audit.jsonl"
    _write_legacy(path, 4)
    log = _open(path, anchors)
    _append(log, 10)
    log.close()
    marker = AuditLog(path).query(action=KEYED_ACTION)
    assert [(e.seq, e.details["legacy_entries"], e.details["legacy_chain_ok"]) for e in marker] == [
        (5, 4, True)
    ]
    assert marker[0].details["legacy_head"]["seq"] == 4
    assert not path.with_name(path.name + ".head").exists()
    report = _verify(path, anchors)
    assert (report.ok, report.entries, report.legacy_entries) == (True, 6, 4), report.problem
    assert anchors.read().keyed_from == 5  # type: ignore[union-attr]


def test_after_the_takeover_legacy_entries_cannot_be_rewritten_unnoticed(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    path = tmp_path / "lake" / "audit.jsonl"
    _write_legacy(path, 4)
    _write(path, anchors, n=2)
    rows = _rows(path)
    rows[1]["principal"] = "mallory"
    legacy = _rechain(rows[:4], legacy_entry_hash)  # a consistent plain SHA-256 prefix
    path.write_bytes(legacy + b"".join(_lines(path)[4:]))
    position, problem = _failure(path, anchors)
    assert position == 5 and "does not chain" in problem  # the keyed marker's link breaks


def test_a_legacy_line_after_the_keyed_chain_started_is_refused(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    path = tmp_path / "lake" / "audit.jsonl"
    _write_legacy(path, 2)
    _write(path, anchors, n=2)
    rows = _rows(path)
    path.write_bytes(_rechain(rows, legacy_entry_hash, start=3))  # entry 4 re-hashed plainly
    position, problem = _failure(path, anchors)
    assert position == 4 and "keyed chain (from entry 3)" in problem


def test_a_legacy_log_broken_before_the_takeover_says_so_in_the_marker(
    tmp_path: Path, anchors: FileAnchorStore
) -> None:
    path = tmp_path / "lake" / "audit.jsonl"
    _write_legacy(path, 4)
    lines = _lines(path)
    path.write_bytes(lines[0] + lines[1].replace(b'"old"', b'"olt"') + b"".join(lines[2:]))
    _open(path, anchors).close()
    marker = AuditLog(path).query(action=KEYED_ACTION)[0]
    assert marker.details["legacy_chain_ok"] is False
    assert "line 2" in marker.details["legacy_problem"]
    assert _failure(path, anchors)[0] == 2


# -- bundles -------------------------------------------------------------------------


def test_an_export_bundle_verifies_with_the_key_and_records_who_exported_it(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    import io
    import zipfile

    data = _open(log_path, anchors).export(exported_by="auditor")
    report = verify_bundle(data, KEY)
    assert (report.ok, report.entries, report.anchored_seq) == (True, N, N), report.problem
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("entries.jsonl") == log_path.read_bytes()
    assert (manifest["exported_by"], manifest["entries"], manifest["last_seq"]) == (
        "auditor",
        N,
        N,
    )
    wrong = verify_bundle(data, WRONG_KEY)
    assert not wrong.ok and "manifest is not signed" in wrong.problem


def _edit_bundle(data: bytes, member: str, edit: Callable[[bytes], bytes]) -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            dst.writestr(name, edit(content) if name == member else content)
    return out.getvalue()


def test_a_tampered_bundle_is_found(log_path: Path, anchors: FileAnchorStore) -> None:
    data = _open(log_path, anchors).export(exported_by="auditor")

    def drop_entry_3_and_fix_the_manifest_hash(manifest: bytes) -> bytes:
        changed = json.loads(manifest)
        changed["entries_sha256"] = "0" * 64
        return json.dumps(changed).encode()

    edited = _edit_bundle(data, "manifest.json", drop_entry_3_and_fix_the_manifest_hash)
    assert "not signed" in verify_bundle(edited, KEY).problem
    lines_edited = _edit_bundle(data, "entries.jsonl", lambda b: b.replace(b"res-2", b"res-9"))
    assert "not the file the manifest names" in verify_bundle(lines_edited, KEY).problem
    assert not verify_bundle(b"not a zip", KEY).ok


# -- the rest ------------------------------------------------------------------------


def test_query_filters_by_principal_action_and_time(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    log = AuditLog(log_path)  # read-only: no key needed to read
    assert [e.seq for e in log.query(principal="alice")] == [1, 3, 5]
    assert [e.seq for e in log.query(action="tokens:create")] == [2, 5]
    window = log.query(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert [e.seq for e in window] == [3, 4]
    assert [e.seq for e in log.query(principal="bob", limit=2)] == [4, 6]
    with pytest.raises(InvalidInputError):
        log.query(since=datetime(2026, 1, 1))


def test_a_log_opened_without_the_key_is_read_only(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    before = log_path.read_bytes()
    log = AuditLog(log_path)
    with pytest.raises(ConfigError) as info:
        _append(log, 99)
    assert info.value.details["field"] == "security.audit_key"
    with pytest.raises(ConfigError):
        log.verify()
    assert log_path.read_bytes() == before


def test_unserialisable_details_and_remote_paths_are_refused(tmp_path: Path) -> None:
    log = _open(tmp_path / "a.jsonl", MemoryAnchorStore())
    with pytest.raises(InvalidInputError):
        log.append(principal="p", action="a", resource="r", decision="x", details={"o": object()})
    assert log.verify().ok and log.last_seq == 0
    with pytest.raises(ConfigError):
        AuditLog.in_lake("s3://bucket/lake")
    with pytest.raises(ConfigError, match="anchor store"):
        AuditLog(tmp_path / "b.jsonl", key=KEY)


def test_a_whole_log_rewritten_as_unkeyed_is_named_from_entry_1_even_with_a_forged_anchor(
    log_path: Path, anchors: FileAnchorStore
) -> None:
    _delete_and_rechain(log_path, plain_sha256, from_start=True)
    last = _rows(log_path)[-1]
    forged = sign_anchor(WRONG_KEY, seq=last["seq"], digest=last["hash"], keyed_from=1, size=0)
    anchors.path.write_text(forged.to_json())
    position, problem = _failure(log_path, anchors)
    assert position == 1 and "rewritten without the key" in problem


def test_an_unkeyed_log_not_yet_taken_over_does_not_verify(tmp_path: Path) -> None:
    from entai.shared.governance import check_chain

    path = tmp_path / "audit.jsonl"
    _write_legacy(path, 3)
    report = check_chain(_lines(path), KEY, None)
    assert (report.ok, report.first_bad_position, report.legacy_entries) == (False, 1, 3)
    assert "not yet taken over" in report.problem


def test_a_garbled_last_line_seals_the_writer(log_path: Path, anchors: FileAnchorStore) -> None:
    with log_path.open("ab") as out:
        out.write(b"not json at all\n")
    log = _open(log_path, anchors)
    assert "not an audit entry" in (log.sealed or "")
    with pytest.raises(AuditIntegrityError):
        _append(log, 99)
    assert _failure(log_path, anchors)[0] == N + 1
