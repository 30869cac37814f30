"""Erasure, pure part and coordinator without Ray: matcher, file rewrites, receipts, audit."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from entai.actors.core import LocalService
from entai.actors.governance import GovernanceChecker
from entai.pipelines.erasure import erase, registered_stores, verify_erased
from entai.shared.core import InvalidInputError, PermissionDeniedError
from entai.shared.data import Lake, pseudonym
from entai.shared.governance import (
    AuditLog,
    ErasureRequest,
    LakeZoneStore,
    StoreReceipt,
    Subject,
    datasets_with_subject,
    lake_traces,
    parse_entity,
)
from entai.shared.settings import EntaiSettings, load_settings

KEY = b"unit-erasure-key-0123456789abcdef"
SUBJECT = Subject.of({"user_id": 42}, KEY)
P42, P43 = pseudonym(42, KEY), pseudonym(43, KEY)


def write_parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def events(ids: list[int]) -> pa.Table:
    return pa.table(
        {"user_id": pa.array(ids, pa.int64()), "amount": [float(i) for i in range(len(ids))]}
    )


# -- requests and the matcher ---------------------------------------------------------


def test_parse_entity_types_integer_literals() -> None:
    assert parse_entity(["user_id=42", "email=a@b.c"]) == {"user_id": 42, "email": "a@b.c"}
    for bad in (["user_id"], ["user_id="], ["=4"], ["a=1", "a=2"]):
        with pytest.raises(InvalidInputError):
            parse_entity(bad)


def test_request_refuses_empty_entity_bad_values_and_anonymous_requests() -> None:
    with pytest.raises(InvalidInputError, match="entity"):
        ErasureRequest({}, "dpo")
    with pytest.raises(InvalidInputError, match="user_id"):
        ErasureRequest({"user_id": 1.5}, "dpo")  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="requested_by"):
        ErasureRequest({"user_id": 1}, " ")


def test_subject_repr_and_digest_hide_the_values() -> None:
    text = repr(SUBJECT) + SUBJECT.digest
    assert "42" not in text.replace(SUBJECT.digest, "")
    assert P42 not in text
    assert SUBJECT.digest != Subject.of({"user_id": 42}, b"another-key-0123456789").digest


def test_row_mask_matches_typed_value_string_form_and_pseudonym_only() -> None:
    table = pa.table(
        {
            "user_id": pa.array(["42", P42, P43, "420", "4", None], pa.string()),
            "x": range(6),
        }
    )
    assert SUBJECT.row_mask(table).to_pylist() == [True, True, False, False, False, False]
    typed = events([42, 43, 420, 42])
    assert SUBJECT.row_mask(typed).to_pylist() == [True, False, False, True]
    dictionary = pa.table({"user_id": pa.array(["42", "7"]).dictionary_encode()})
    assert SUBJECT.row_mask(dictionary).to_pylist() == [True, False]
    assert SUBJECT.row_mask(pa.table({"other_id": [42]})).to_pylist() == [False]


def test_key_mask_finds_composite_entity_keys_but_not_lookalikes() -> None:
    keys = [
        "user_id=i:42",
        'category=s:"books"|user_id=i:42',
        f'user_id=s:"{P42}"',
        "user_id=i:420",
        'category=s:"user_id=i:42x"|user_id=i:7',
        "user_id=i:4",
    ]
    assert SUBJECT.key_mask(pa.array(keys)).to_pylist() == [True, True, True, False, False, False]
    tagged = SUBJECT.with_tags({"req-9"})
    assert tagged.key_mask(pa.array(["req-9", "req-1"])).to_pylist() == [True, False]


def test_multi_key_subject_needs_every_key() -> None:
    both = Subject.of({"user_id": 42, "category": "books"}, KEY)
    table = pa.table({"user_id": [42, 42, 7], "category": ["books", "toys", "books"]})
    assert both.row_mask(table).to_pylist() == [True, False, False]
    assert 'category=s:"books"|user_id=i:42' in both.entity_keys()


# -- lake zones ----------------------------------------------------------------------


def test_zone_store_rewrites_only_files_holding_the_subject(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    root = tmp_path / "lake" / "offline" / "user_stats"
    mixed = write_parquet(root / "date=2026-01-01" / "part-a.parquet", events([1, 42, 2, 42]))
    other = write_parquet(root / "date=2026-01-02" / "part-b.parquet", events([3, 4]))
    alone = write_parquet(root / "date=2026-01-03" / "part-c.parquet", events([42]))
    untouched = other.read_bytes(), other.stat().st_mtime_ns
    store = LakeZoneStore("offline", lake, ["offline"])

    assert store.scan(SUBJECT) == 3
    receipt = store.erase(SUBJECT)

    assert (receipt.status, receipt.rows_removed) == ("erased", 3)
    assert (receipt.files_rewritten, receipt.files_deleted) == (1, 1)
    assert sorted(receipt.touched) == [
        "offline/user_stats/date=2026-01-01/part-a.parquet",
        "offline/user_stats/date=2026-01-03/part-c.parquet",
    ]
    assert pq.read_table(mixed).column("user_id").to_pylist() == [1, 2]
    assert pq.read_table(mixed).column("amount").to_pylist() == [0.0, 2.0]
    assert not alone.exists()
    assert (other.read_bytes(), other.stat().st_mtime_ns) == untouched
    assert store.scan(SUBJECT) == 0
    assert store.erase(SUBJECT).status == "clean"
    assert not [p for p in root.rglob("*") if p.name.startswith(".tmp")]


def test_zone_store_rewrites_json_lines_keeping_other_lines_byte_for_byte(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    log = tmp_path / "predictions" / "m" / "2026-01-01.jsonl"
    log.parent.mkdir(parents=True)
    lines = [
        '{"request_id": "r1", "user_id": 7, "prediction": 0.25}\n',
        '{"request_id": "r2", "user_id": 42, "prediction": 0.5}\n',
        '{"request_id": "r3", "entity_key": "user_id=i:42", "prediction": 0.1}\n',
        '{"request_id":"r4","user_id":43,  "prediction":0.75}\n',
    ]
    log.write_text("".join(lines))
    receipt = LakeZoneStore("predictions", lake, ["predictions"]).erase(SUBJECT)
    assert receipt.rows_removed == 2
    assert log.read_text() == lines[0] + lines[3]


def test_lake_traces_scans_every_file_and_datasets_are_listed(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    write_parquet(tmp_path / "raw" / "ev" / "p.parquet", events([42, 1]))
    write_parquet(
        tmp_path / "raw" / "pseudo" / "p.parquet",
        pa.table({"uid": [f"note about {P42}", "x"]}),  # pseudonym under another column
    )
    write_parquet(tmp_path / "datasets" / "ts-1" / "data.parquet", events([42, 42, 5]))
    write_parquet(tmp_path / "datasets" / "ts-2" / "data.parquet", events([5]))
    state = tmp_path / "monitoring" / "m" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"tag": ["user_id=i:42", "user_id=i:420"], "user_id": 42}))
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "clean.json").write_text(json.dumps({"user_id": 420, "n": 42}))

    traces = lake_traces(lake, SUBJECT)

    assert traces == {
        "raw/ev/p.parquet": 1,
        "raw/pseudo/p.parquet": 1,
        "datasets/ts-1/data.parquet": 2,
        "monitoring/m/state.json": 2,
    }
    assert datasets_with_subject(lake, SUBJECT) == {"ts-1": 2}


# -- the coordinator, without Ray ---------------------------------------------------------


def _settings(tmp_path: Path) -> EntaiSettings:
    return load_settings(home=tmp_path / "home", lake={"root": str(tmp_path / "lake")}).resolved()


def test_erase_authorises_erases_verifies_and_audits_without_values(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    lake = tmp_path / "lake"
    write_parquet(lake / "raw" / "events" / "date=2026-01-01" / "p.parquet", events([42, 7]))
    write_parquet(lake / "quarantine" / "events" / "date=2026-01-01" / "q.parquet", events([42]))
    write_parquet(lake / "datasets" / "ts-9" / "data.parquet", events([42]))

    receipt = erase(
        settings,
        ErasureRequest({"user_id": 42}, "dpo@example.com", "ticket 17"),
        caller=admin,
        governance=LocalService(governance),
        hmac_key=KEY,
    )

    by_store = {s.store: s for s in receipt.stores}
    assert by_store["raw"].rows_removed == 1
    assert by_store["quarantine"].files_deleted == 1
    assert by_store["online"].status == "absent"  # memory backend, no shard actors
    assert by_store["drift_monitor"].status == "absent"
    assert "not running" in by_store["drift_monitor"].note
    assert receipt.retrain_datasets == {"ts-9": 1}
    assert receipt.complete and set(receipt.remaining.values()) == {0}
    assert verify_erased(settings, SUBJECT) == dict(receipt.remaining)
    assert pq.read_table(lake / "raw/events/date=2026-01-01/p.parquet")["user_id"].to_pylist() == [
        7
    ]
    governance.flush_audit()
    entries = AuditLog.in_lake(settings.lake.root).query(action="governance:erase")
    assert [e.resource for e in entries] == [f"subject:{SUBJECT.digest}"], "one entry"
    audited = entries[-1]
    assert audited.principal == "admin" and audited.decision == "allow"
    assert audited.details["erasure_id"] == receipt.erasure_id
    assert lake_traces(Lake(settings.lake.root), SUBJECT) == {"datasets/ts-9/data.parquet": 1}


def test_erase_without_the_permission_is_refused_and_erases_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    analyst, _ = governance.create_token(admin, "analyst")
    path = write_parquet(tmp_path / "lake" / "raw" / "events" / "p.parquet", events([42]))

    with pytest.raises(PermissionDeniedError):
        erase(
            settings,
            ErasureRequest({"user_id": 42}, "someone"),
            caller=analyst,
            governance=LocalService(governance),
            hmac_key=KEY,
        )
    assert pq.read_table(path).num_rows == 1
    denied = AuditLog.in_lake(settings.lake.root).query(action="governance:erase")
    assert [e.decision for e in denied] == ["deny"]


def test_builtin_stores_are_registered_in_order(tmp_path: Path) -> None:
    names = [s.name for s in registered_stores(_settings(tmp_path))]
    assert names[:6] == ["online", "offline", "raw", "quarantine", "predictions", "drift_monitor"]


# -- erasures are serialised per store ------------------------------------------------


def test_two_concurrent_erasures_over_the_same_files_leave_neither_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from entai.shared.governance import _erasure_files

    settings = _settings(tmp_path)
    governance = LocalService(GovernanceChecker(settings))
    admin = settings.security.token_file.read_text().strip()
    lake = tmp_path / "lake"
    paths = [
        write_parquet(lake / "raw" / "events" / f"p{i}.parquet", events([42, 43, 7]))
        for i in range(3)
    ]
    stores = [LakeZoneStore("raw", Lake(settings.lake.root), ["raw"])]

    # Each erasure, once it has read a file and is about to write it back, waits for the
    # other to have read it too: without the store's lock both rewrite from the version
    # before the other's rewrite, and one subject comes back. With the lock the other
    # never gets there, and the wait gives up.
    rewrite = _erasure_files._rewrite
    read = {42: threading.Event(), 43: threading.Event()}
    overlapped: list[bool] = []

    def racing_rewrite(lake_: Lake, path: str, keep: pa.Array) -> bool:
        me = 42 if threading.current_thread().name == "erase-42" else 43
        read[me].set()
        overlapped.append(read[85 - me].wait(timeout=1.0))
        return bool(rewrite(lake_, path, keep))

    monkeypatch.setattr(_erasure_files, "_rewrite", racing_rewrite)
    receipts: dict[int, bool] = {}

    def run(user: int) -> None:
        receipt = erase(
            settings,
            ErasureRequest({"user_id": user}, "dpo@example.com"),
            caller=admin,
            stores=stores,
            governance=governance,
            hmac_key=KEY,
        )
        receipts[user] = receipt.complete

    threads = [threading.Thread(target=run, args=(u,), name=f"erase-{u}") for u in (42, 43)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert receipts == {42: True, 43: True}
    assert not any(overlapped[:1]), "the second erasure read a file the first was rewriting"
    for path in paths:
        assert pq.read_table(path)["user_id"].to_pylist() == [7]


def test_erasure_refuses_an_object_store_lake_without_a_shared_lock(tmp_path: Path) -> None:
    from entai.pipelines.erasure_locks import erasure_lock, lock_kind
    from entai.shared.core import ConfigError

    assert lock_kind(_settings(tmp_path)) == "file"
    remote = load_settings(home=tmp_path / "home", lake={"root": "s3://bucket/lake"}).resolved()
    with (
        pytest.raises(ConfigError, match="PostgreSQL governance store"),
        erasure_lock(remote, "raw"),
    ):
        pass


# -- erasure as a job -----------------------------------------------------------------


def test_an_erasure_job_answers_running_then_its_receipt_from_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.pipelines import erasure as coordinator
    from entai.pipelines.erasure import erasure_status, start_erasure
    from entai.shared.core import NotFoundError

    settings = _settings(tmp_path)
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    path = write_parquet(tmp_path / "lake" / "raw" / "events" / "p.parquet", events([42, 7]))
    submitted: list[tuple[object, ...]] = []

    class Task:  # the Ray task, held until the test runs it
        def options(self, **_: object) -> Task:
            return self

        def remote(self, *args: object) -> None:
            submitted.append(args)

    monkeypatch.setattr(coordinator, "_erasure_task", Task())
    request = ErasureRequest({"user_id": 42}, "dpo@example.com", "ticket 18")
    started = start_erasure(settings, request, caller=admin)
    erasure_id = started["erasure_id"]
    assert erasure_status(settings, erasure_id)["status"] == "running"
    assert pq.read_table(path).num_rows == 2  # nothing erased until the task runs

    (args,) = submitted
    coordinator._run_job(*args)  # type: ignore[arg-type]
    receipt = erasure_status(settings, erasure_id)
    assert receipt["status"] == "done" and receipt["complete"] is True
    assert receipt["erasure_id"] == erasure_id and receipt["subject"] == started["subject"]
    assert {s["store"]: s["rows_removed"] for s in receipt["stores"]}["raw"] == 1
    assert set(receipt["remaining"].values()) == {0}
    assert pq.read_table(path)["user_id"].to_pylist() == [7]
    text = json.dumps(receipt)
    assert P42 not in text and "user_id=i:42" not in text and '"user_id": 42' not in text

    # A token revoked before the task ran: the job fails, and says so.
    dpo, _ = governance.create_token(admin, "admin")
    again = start_erasure(settings, request, caller=dpo)
    governance.revoke_token(admin, dpo.split("_")[1])
    coordinator._run_job(*submitted[-1])  # type: ignore[arg-type]
    failed = erasure_status(settings, again["erasure_id"])
    assert failed["status"] == "failed" and "revoked" in failed["error"]

    with pytest.raises(NotFoundError):
        erasure_status(settings, "0" * 32)
    with pytest.raises(NotFoundError):
        erasure_status(settings, "../../audit/audit")


def _inline_task(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Replace the erasure's Ray task by a list of its submitted arguments."""
    from entai.pipelines import erasure as coordinator

    submitted: list[tuple[object, ...]] = []

    class Task:
        def options(self, **options: object) -> Task:
            assert options.get("max_retries") == 0, "a dead erasure task is reported, not rerun"
            return self

        def remote(self, *args: object) -> None:
            submitted.append(args)

    monkeypatch.setattr(coordinator, "_erasure_task", Task())
    return submitted


def test_an_erasure_job_writes_one_audit_entry_and_a_refusal_only_its_denial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.pipelines import erasure as coordinator
    from entai.pipelines.erasure import start_erasure

    settings = _settings(tmp_path)
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    analyst, _ = governance.create_token(admin, "analyst")
    write_parquet(tmp_path / "lake" / "raw" / "events" / "p.parquet", events([42, 7]))
    submitted = _inline_task(monkeypatch)
    request = ErasureRequest({"user_id": 42}, "http", "ticket 19")

    with pytest.raises(PermissionDeniedError):
        start_erasure(settings, request, caller=analyst)
    started = start_erasure(settings, request, caller=admin)
    (args,) = submitted
    coordinator._run_job(*args)  # type: ignore[arg-type]

    entries = AuditLog.in_lake(settings.lake.root).query(action="governance:erase")
    assert [(e.principal, e.decision) for e in entries] == [("analyst", "deny"), ("admin", "allow")]
    assert entries[-1].details["erasure_id"] == started["erasure_id"]


def test_an_erasure_that_raises_after_it_started_is_audited_once_as_incomplete(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()

    class Broken:
        name = "broken"

        def erase(self, subject: Subject) -> StoreReceipt:
            raise AssertionError("not reached: discovery scans first")

        def scan(self, subject: Subject) -> int:
            return 0

    class BrokenLake(LakeZoneStore):
        def find_tags(self, subject: Subject, column: str) -> set[str]:
            raise OSError("lake unreachable")

    stores = [Broken(), BrokenLake("raw", Lake(settings.lake.root), ("raw",))]
    with pytest.raises(OSError, match="unreachable"):
        erase(
            settings,
            ErasureRequest({"user_id": 42}, "dpo@example.com"),
            caller=admin,
            stores=stores,  # type: ignore[list-item]
            governance=LocalService(governance),
            hmac_key=KEY,
            erasure_id="e" * 32,
        )
    governance.flush_audit()
    entries = AuditLog.in_lake(settings.lake.root).query(action="governance:erase")
    assert [(e.decision, e.details["erasure_id"]) for e in entries] == [("incomplete", "e" * 32)]
    assert entries[0].details["error"] == "OSError"


def test_a_running_erasure_whose_lease_ran_out_is_failed_and_can_be_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from entai.pipelines import erasure as coordinator
    from entai.pipelines.erasure import erasure_status, start_erasure

    settings = _settings(tmp_path)
    GovernanceChecker(settings)  # writes the first admin token
    admin = settings.security.token_file.read_text().strip()
    path = write_parquet(tmp_path / "lake" / "raw" / "events" / "p.parquet", events([42, 7]))
    submitted = _inline_task(monkeypatch)
    request = ErasureRequest({"user_id": 42}, "http", "ticket 20")

    with pytest.raises(InvalidInputError):
        start_erasure(settings, request, caller=admin, lease_s=0)
    dead = start_erasure(settings, request, caller=admin, lease_s=0.2)
    assert erasure_status(settings, dead["erasure_id"])["status"] == "running"
    time.sleep(0.3)  # the task never started (its worker died): no heartbeat
    failed = erasure_status(settings, dead["erasure_id"])
    assert failed["status"] == "failed" and "no heartbeat since" in failed["error"]
    assert pq.read_table(path).num_rows == 2

    again = start_erasure(settings, request, caller=admin, lease_s=30)
    coordinator._run_job(*submitted[-1])  # type: ignore[arg-type]
    done = erasure_status(settings, again["erasure_id"])
    assert done["status"] == "done" and done["complete"] is True
    assert pq.read_table(path)["user_id"].to_pylist() == [7]


def test_the_erasure_heartbeat_renews_the_lease_until_the_final_receipt(
    tmp_path: Path,
) -> None:
    import os
    import time

    from entai.pipelines.erasure import _Heartbeat, erasure_status

    settings = _settings(tmp_path)
    status = {
        "erasure_id": "a" * 32,
        "status": "running",
        "subject": SUBJECT.digest,
        "requested_by": "http",
        "principal": "admin",
        "reason": "",
        "started_at": "2026-01-01T00:00:00+00:00",  # long ago: only heartbeats keep it
        "lease_s": 0.4,
    }
    heartbeat = _Heartbeat(settings, status)
    heartbeat.start()
    for _ in range(4):
        time.sleep(0.2)
        beat = erasure_status(settings, "a" * 32)
        assert beat["status"] == "running" and beat["worker_pid"] == os.getpid()
    heartbeat.finish({**status, "status": "done"})
    time.sleep(0.3)
    assert erasure_status(settings, "a" * 32)["status"] == "done"
