"""The SQLite online store's own guarantees (the shared rules are in the contract tests):
a restarted shard keeps what it acknowledged, a bad batch writes nothing, erasure leaves
no bytes behind, and the event-loop read never waits on a lock. Its guarantees across
processes are in tests/integration/test_online_sqlite_processes.py."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from credentials import SERVICE, callers

from entai.actors.backends import SqliteOnlineStore
from entai.actors.features import FeatureShard, shard_name
from entai.pipelines.erasure import OnlineStoreEraser
from entai.shared.core import InvalidInputError, ServiceUnavailableError
from entai.shared.features import FeatureRow, FeatureStatus, ReadRequest, entity_key
from entai.shared.governance import Subject
from entai.shared.settings import SqliteOnlineStoreSettings, load_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P, N = FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND
OLD = FeatureStatus.OUTSIDE_MAX_AGE
KEY = b"unit-sqlite-erasure-key-0123456789"


def row(key: str, ev: float, view: str = "v", **values: object) -> FeatureRow:
    return FeatureRow(view, key, values, T0 + timedelta(seconds=ev), T0)


def disk_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()))


def test_a_restarted_shard_serves_what_it_acknowledged(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, online_store={"num_shards": 1}).resolved()
    shard = FeatureShard(shard_name(0), settings.online_store, callers=callers())
    assert shard.write([row("k", 1, x=1.5, s="a")], credential=SERVICE) == 1
    del shard
    again = FeatureShard(shard_name(0), settings.online_store, callers=callers())
    res = again.read("v", ["k"], ["x", "s"], ttl=None, now=T0)
    assert res.values == [[1.5], ["a"]] and res.statuses == [[P], [P]]


def test_a_bad_value_writes_nothing_of_its_batch(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path, ["s0"])
    with pytest.raises(InvalidInputError, match="v:x"):
        store.write([row("good", 1, x=1), row("bad", 1, x=object())])
    assert list(store.scan()) == []


def test_an_unusable_directory_is_service_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SqliteOnlineStore(tmp_path / "file" / "online", ["s0"])
    with pytest.raises(ServiceUnavailableError, match="SQLite online store write"):
        store.write([row("k", 1, x=1)])
    with pytest.raises(ServiceUnavailableError):
        asyncio.run(store.read_many_async([ReadRequest("v", ["k"], ["x"], None)], T0))


def test_event_loop_read_equals_the_reads_and_retries_a_busy_file_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteOnlineStore(tmp_path, ["s0", "s1", "s2"])
    store.write([row(f"k{i}", -i, x=i) for i in range(5)] + [row("k1", 0, view="w", z="s")])
    requests = [
        ReadRequest("v", ["k0", "nope", "k4", "k2"], ["x", "absent"], timedelta(seconds=3)),
        ReadRequest("w", ["k1"], ["z"], None),
        ReadRequest("w", [], ["z"], None),
    ]
    want = store.read_many(requests, T0)
    assert want[0].statuses == [[P, N, OLD, P], [N, N, OLD, N]]
    assert asyncio.run(store.read_many_async(requests, T0)) == want

    waits: list[bool] = []
    read = store._read

    def busy_on_the_loop(*args: object, wait: bool) -> object:
        waits.append(wait)
        if not wait:
            raise sqlite3.OperationalError("database is locked")
        return read(*args, wait=wait)

    monkeypatch.setattr(store, "_read", busy_on_the_loop)
    assert asyncio.run(store.read_many_async(requests, T0)) == want
    assert waits == [False, True, True, True]  # inline once, then the waiting thread


def test_purge_after_delete_leaves_no_bytes_of_the_rows(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path, ["s0"])
    secret = "erase-me-4242"
    rows = [
        row(f"user_id=i:{i}|k={j}", 1, x=i, note=f"kept-{i}") for i in range(300) for j in range(3)
    ]
    rows += [row(f"user_id=i:{secret}|k={j}", 1, x=-1, note=secret) for j in range(3)]
    store.write(rows)
    reader = SqliteOnlineStore(tmp_path, ["s0"])  # another connection that has read
    assert reader.read("v", [rows[-1].entity_key], ["note"], ttl=None, now=T0).values == [[secret]]
    assert secret.encode() in disk_bytes(tmp_path)

    assert store.delete("v", [r.entity_key for r in rows[-3:]]) == 3
    store.purge()
    assert secret.encode() not in disk_bytes(tmp_path)
    assert (tmp_path / "s0.sqlite-wal").stat().st_size == 0
    res = reader.read("v", [r.entity_key for r in rows], ["x"], ttl=None, now=T0)
    assert res.values == [[i for i in range(300) for _ in range(3)] + [None] * 3]


def test_the_eraser_deletes_a_subject_from_every_shard_file(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, online_store={"num_shards": 2}).resolved()
    eraser = OnlineStoreEraser(settings)
    subject = Subject.of({"user_id": 3}, KEY)
    nobody = eraser.erase(Subject.of({"user_id": 99}, KEY))
    assert nobody.status == "absent"  # no shard had written a file yet
    assert nobody.tombstones == 3  # user_id=i:99 and its two string spellings

    directory = settings.online_store.path
    assert isinstance(settings.online_store, SqliteOnlineStoreSettings) and directory is not None
    store = SqliteOnlineStore(directory, [shard_name(i) for i in range(2)])
    keys = [entity_key({"user_id": u, "category": c}) for u in (3, 4, 33) for c in "ab"]
    store.write([row(k, 1, x=1) for k in keys] + [row(entity_key({"user_id": 3}), 1, "u", y=2)])
    subject_keys = {entity_key({"user_id": 3, "category": c}) for c in "ab"}
    assert eraser.scan(subject) == 3
    assert re.search(rb"user_id=i:3(?![0-9])", disk_bytes(directory))

    receipt = eraser.erase(subject)
    assert (receipt.status, receipt.rows_removed, receipt.touched) == ("erased", 3, ("u:1", "v:2"))
    assert eraser.scan(subject) == 0
    left = sorted(r.entity_key for r in store.scan())
    assert left == sorted(set(keys) - subject_keys)  # user 33 is not user 3
    assert not re.search(rb"user_id=i:3(?![0-9])", disk_bytes(directory))
    assert receipt.tombstones >= 3


def test_after_erasure_a_late_write_stays_erased_and_new_activity_lands(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, online_store={"num_shards": 2}).resolved()
    directory = settings.online_store.path
    assert isinstance(settings.online_store, SqliteOnlineStoreSettings) and directory is not None
    shards = [
        FeatureShard(shard_name(i), settings.online_store, callers=callers()) for i in range(2)
    ]
    store = SqliteOnlineStore(directory, [shard_name(i) for i in range(2)])
    subject_key, other = entity_key({"user_id": 3}), entity_key({"user_id": 4})
    store.write([row(subject_key, 1, x=1), row(other, 1, x=1)])
    assert OnlineStoreEraser(settings).erase(Subject.of({"user_id": 3}, KEY)).rows_removed == 1

    # A replay of the subject's old events, whichever shard file the key routes to.
    for shard in shards:
        shard.write([row(subject_key, 2, x=2), row(other, 2, x=2)], credential=SERVICE)
    read = store.read("v", [subject_key, other], ["x"], ttl=None, now=T0)
    assert read.statuses == [[N, P]] and read.values == [[None, 2]]
    assert sum(s.describe()["tombstoned_writes"] for s in shards) == 2
    assert not re.search(rb"user_id=i:3(?![0-9])", disk_bytes(directory))

    later = datetime.now(UTC) + timedelta(seconds=1)  # real activity after the erasure
    store.write([FeatureRow("v", subject_key, {"x": 3}, later, later)])
    assert store.read("v", [subject_key], ["x"], ttl=None, now=later).values == [[3]]
