"""File ingestion on Ray Data: invariant, quarantine, idempotence, malformed files, PII."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from planted_pii import clean, counts, leaked, planted

from entai.pipelines.ingest import ingest_file
from entai.shared.core import ContractViolationError, InvalidInputError
from entai.shared.data import DataContract, UndeclaredPii, pseudonym

KEY = b"ray-test-key-0123456789abcdef"
CONTRACT = DataContract.from_yaml(
    """
source: events
purpose: test
retention_days: 30
event_time: ts
key: [event_id]
columns:
  - {name: event_id, type: string, nullable: false, regex: "e[0-9]+"}
  - {name: user_id, type: string, pii: identifier, nullable: false}
  - {name: email, type: string, pii: sensitive, masking: redact}
  - {name: amount, type: float64, min: 0}
  - {name: kind, type: string, allowed: [view, buy]}
  - {name: note, type: string, pii: free_text}
  - {name: ts, type: timestamp}
"""
)
HEADER = "event_id,user_id,email,amount,kind,note,ts"


def good(i: int, day: int = 1) -> str:
    return f"e{i},u{i % 7},u{i}@example.com,{i}.5,view,hello,2024-03-0{day}T10:00:00Z"


def write(tmp: Path, name: str, lines: list[str]) -> Path:
    path = tmp / name
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def ingest(path: Path, lake: Path, **kwargs: Any) -> Any:
    return ingest_file(
        CONTRACT, str(path), lake_root=str(lake), hmac_key=KEY, progress=False, **kwargs
    )


def read_zone(lake: Path, zone: str) -> pa.Table:
    files = sorted((lake / zone).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def test_mixed_file_keeps_invariant_and_reasons(ray_cluster: Any, tmp_path: Path) -> None:
    bad = [
        "e900,u1,a@b.io,-1,view,x,2024-03-01T00:00:00Z",  # range
        "e901,u1,a@b.io,1,steal,x,2024-03-01T00:00:00Z",  # category
        "x902,u1,a@b.io,1,view,x,2024-03-01T00:00:00Z",  # regex
        "e903,,a@b.io,1,view,x,2024-03-01T00:00:00Z",  # not_null
        "e904,u1,a@b.io,abc,view,x,2024-03-01T00:00:00Z",  # type
        "e905,u1,a@b.io,1,view,x,not-a-time",  # type on ts
        good(3),  # unique (duplicate of e3)
    ]
    lines = [good(i, day=1 + i % 3) for i in range(40)] + bad
    report = ingest(write(tmp_path, "mixed.csv", lines), tmp_path / "lake")
    assert report.rows_in == 47
    assert (report.rows_accepted, report.rows_quarantined) == (40, 7)
    raw = read_zone(tmp_path / "lake", "raw/events")
    assert raw.num_rows == 40
    assert len(list((tmp_path / "lake/raw/events").glob("date=*"))) == 3
    quarantine = read_zone(tmp_path / "lake", "quarantine/events").to_pylist()
    reasons = {(q["event_id"], q["_quarantine_rule"], q["_quarantine_column"]) for q in quarantine}
    assert reasons == {
        ("e900", "range", "amount"),
        ("e901", "category", "kind"),
        ("x902", "regex", "event_id"),
        ("e903", "not_null", "user_id"),
        ("e904", "type", "amount"),
        ("e905", "type", "ts"),
        ("e3", "unique", "event_id"),
    }
    manifest = json.loads(
        (tmp_path / f"lake/manifests/ingest/events/{report.batch_id}.json").read_text()
    )
    assert manifest["rows_in"] == 47
    assert manifest["contract_version"] == 1
    assert manifest["input_hash"] == report.input_hash


def test_same_file_twice_adds_nothing(ray_cluster: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", [good(i) for i in range(10)])
    first = ingest(path, tmp_path / "lake")
    before = sorted(p for p in (tmp_path / "lake").rglob("*") if p.is_file())
    again = ingest(path, tmp_path / "lake", batch_id="another-id")
    after = sorted(p for p in (tmp_path / "lake").rglob("*") if p.is_file())
    assert again.skipped_as_duplicate and not first.skipped_as_duplicate
    assert again.rows_accepted == first.rows_accepted == 10
    assert before == after


def test_duplicates_across_files_are_quarantined(ray_cluster: Any, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder, "1.csv", [good(i) for i in range(5)])
    # Each file is its own block; block 2 stages one file per event date, and the
    # duplicates sit in both of them; block 3 stages a single, wholly duplicate row.
    write(folder, "2.csv", [good(i, day=1 + i % 2) for i in range(3, 8)])
    write(folder, "3.csv", [good(0, day=3)])
    lake = tmp_path / "lake"
    report = ingest(folder, lake)
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (11, 8, 3)

    raw = read_zone(lake, "raw/events").column("event_id").to_pylist()
    assert sorted(raw) == [f"e{i}" for i in range(8)]  # each key once, the first kept
    quarantined = read_zone(lake, "quarantine/events")
    assert sorted(quarantined.column("event_id").to_pylist()) == ["e0", "e3", "e4"]
    assert set(quarantined.column("_quarantine_rule").to_pylist()) == {"unique"}
    assert all((lake / f).is_file() for f in report.files_written)
    assert not (lake / "raw/events/date=2024-03-03").exists()  # nothing accepted that day
    assert not list((lake / "_staging").rglob("*.parquet"))


def test_duplicates_within_one_block_keep_the_first_in_input_order(
    ray_cluster: Any, tmp_path: Path
) -> None:
    # One small file is one block. e1 comes first on day 3, then again on day 1 (an
    # earlier date's file, staged before day 3's); e2 repeats within day 2's file.
    lines = [good(1, day=3), good(2, day=2), good(3, day=2), good(2, day=2), good(1, day=1)]
    lake = tmp_path / "lake"
    report = ingest(write(tmp_path, "dups.csv", lines), lake)
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (5, 3, 2)
    raw = read_zone(lake, "raw/events")
    days = {(r["event_id"], r["ts"].day) for r in raw.select(["event_id", "ts"]).to_pylist()}
    assert days == {("e1", 3), ("e2", 2), ("e3", 2)}
    quarantined = read_zone(lake, "quarantine/events").to_pylist()
    assert sorted((q["event_id"], q["_quarantine_rule"]) for q in quarantined) == [
        ("e1", "unique"),
        ("e2", "unique"),
    ]
    assert not (lake / "raw/events/date=2024-03-01").exists()


def test_large_csv_is_read_in_ranges_and_keeps_the_invariant(
    ray_cluster: Any, tmp_path: Path
) -> None:
    # ~3.4 MB: cut into ranges read by separate tasks; e5 repeats at the very end, so
    # the duplicate sits in another range than its first copy.
    lines = [good(i, day=1 + i % 3) for i in range(50_000)] + [good(5), good(6)[:-1] + "x"]
    report = ingest(write(tmp_path, "big.csv", lines), tmp_path / "lake")
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (50_002, 50_000, 2)
    staged = {f.rsplit("/", 1)[-1] for f in report.files_written if f.startswith("raw/")}
    assert len(staged) >= 2  # several tasks staged their own files
    raw = read_zone(tmp_path / "lake", "raw/events").column("event_id").to_pylist()
    assert sorted(raw) == sorted(f"e{i}" for i in range(50_000))
    quarantine = read_zone(tmp_path / "lake", "quarantine/events").to_pylist()
    assert {(q["event_id"], q["_quarantine_rule"]) for q in quarantine} == {
        ("e5", "unique"),
        ("e6", "type"),
    }


def test_parquet_and_json_lines(ray_cluster: Any, tmp_path: Path) -> None:
    rows = [dict(zip(HEADER.split(","), good(i).split(","), strict=True)) for i in range(6)]
    rows[0]["amount"] = "-3"
    table = pa.Table.from_pylist(rows).set_column(3, "amount", pa.array([-3.0, *range(5)]))
    pq.write_table(table, tmp_path / "in.parquet")
    report = ingest(tmp_path / "in.parquet", tmp_path / "lake")
    assert (report.rows_accepted, report.rows_quarantined) == (5, 1)
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows[1:]) + "\n")
    report = ingest(tmp_path / "in.jsonl", tmp_path / "lake2")
    assert (report.rows_accepted, report.rows_quarantined) == (5, 0)


def raw_files(lake: Path) -> list[Path]:
    return [p for p in lake.rglob("*") if p.is_file() and "raw" in p.parts]


@pytest.mark.parametrize("case", ["truncated", "latin1", "empty", "parquet_schema", "columns"])
def test_malformed_files_fail_cleanly(ray_cluster: Any, tmp_path: Path, case: str) -> None:
    lake = tmp_path / "lake"
    if case == "truncated":
        path = write(tmp_path, "t.csv", [good(1), good(2)[:12]])
        error: type[Exception] = InvalidInputError
    elif case == "latin1":
        path = tmp_path / "l.csv"
        path.write_bytes(
            (HEADER + "\n" + good(1).replace("hello", "h\u00e9llo") + "\n").encode("latin-1")
        )
        error = InvalidInputError
    elif case == "empty":
        path = tmp_path / "e.csv"
        path.write_bytes(b"")
        error = InvalidInputError
    elif case == "parquet_schema":
        path = tmp_path / "p.parquet"
        pq.write_table(pa.table({"event_id": ["e1"], "ts": [1.5]}), path)
        error = ContractViolationError
    else:
        path = tmp_path / "c.csv"
        path.write_text("event_id,user\ne1,u1\n")
        error = ContractViolationError
    with pytest.raises(error, match=path.name):
        ingest(path, lake)
    assert raw_files(lake) == []
    assert not (lake / "manifests").exists() or not list((lake / "manifests").rglob("*.json"))


def test_planted_pii_never_lands_anywhere(
    ray_cluster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    planted = {
        "emails": [f"person{i}.secret@corp-mail.com" for i in range(20)],
        "ssns": [f"{100 + i}-45-67{10 + i}" for i in range(20)],
        "cards": ["4111 1111 1111 1111", "5555555555554444", "3782 822463 10005"],
        "phones": ["(212) 555-0147", "+44 20 7946 0958", "646-555-0199"],
    }
    cards, phones = planted["cards"], planted["phones"]
    lines = []
    for i in range(20):
        note = (
            f"mail {planted['emails'][i]} ssn {planted['ssns'][i]} "
            f"card {cards[i % 3]} phone {phones[i % 3]}"
        )
        user = planted["emails"][i] if i % 2 else planted["ssns"][i]
        amount = "-1" if i % 5 == 0 else "1"  # some rows go to quarantine
        lines.append(f'e{i},{user},{planted["emails"][i]},{amount},view,"{note}",2024-03-01')
    lines.append(f'e99,{planted["emails"][1]},x@y.io,1,view,"{cards[0]}",2024-03-01')
    caplog.set_level(logging.DEBUG)
    lake = tmp_path / "lake"
    report = ingest(write(tmp_path, "pii.csv", lines), lake)
    assert report.rows_quarantined == 4
    blob = b"".join(p.read_bytes() for p in lake.rglob("*") if p.is_file())
    logs = caplog.text.encode()
    values = [v for group in planted.values() for v in group]
    assert [v for v in values if v.encode() in blob or v.encode() in logs] == []
    users = read_zone(lake, "raw/events").to_pydict()
    by_event = dict(zip(users["event_id"], users["user_id"], strict=True))
    assert by_event["e1"] == by_event["e99"] == pseudonym(planted["emails"][1], KEY)
    accepted_users = {by_event[f"e{i}"] for i in range(20) if i % 5}
    assert len(accepted_users) == 16  # distinct ids never collide


TICKETS = DataContract.from_yaml(
    """
source: tickets
purpose: test
retention_days: 30
event_time: ts
key: [ticket_id]
columns:
  - {name: ticket_id, type: string, nullable: false}
  - {name: customer, type: string, pii: identifier}
  - {name: comment, type: string}
  - {name: amount, type: float64, min: 0}
  - {name: ts, type: timestamp, nullable: false}
"""
)


def lake_text(lake: Path) -> str:
    """Every file under the lake read back: Parquet as its rows, and every file's bytes."""
    parts = []
    for path in sorted(p for p in lake.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        parts.append(path.read_bytes().decode("latin-1"))  # footers, manifests, intents
    return "\n".join(parts)


@pytest.mark.parametrize("policy", [UndeclaredPii.QUARANTINE, UndeclaredPii.REDACT])
def test_undeclared_free_text_pii_never_lands_in_the_clear(
    ray_cluster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: UndeclaredPii
) -> None:
    values = planted(2000)
    comments = [text for _, _, text in values] + clean(2000)
    order = list(range(len(comments)))
    random.Random(17).shuffle(order)
    frame = pd.DataFrame(
        {
            "ticket_id": [f"t{i}" for i in order],
            "customer": [f"c{i % 300}" for i in order],
            "comment": [comments[i] for i in order],
            "amount": ["-1" if i % 97 == 0 else "12.5" for i in order],  # rule range
            "ts": [f"2024-03-0{1 + i % 3}T10:00:00Z" for i in order],
        }
    )
    path = tmp_path / "tickets.csv"
    frame.to_csv(path, index=False)
    lake = tmp_path / "lake"
    caplog.set_level(logging.DEBUG)

    report = ingest_file(
        TICKETS,
        str(path),
        lake_root=str(lake),
        hmac_key=KEY,
        progress=False,
        undeclared_pii=policy,
    )

    out_of_range = sum(1 for i in order if i % 97 == 0)
    planted_out_of_range = sum(1 for i in range(2000) if i % 97 == 0)
    assert report.rows_in == 4000 == report.rows_accepted + report.rows_quarantined
    assert report.pii_findings == {"comment": counts(values)}
    (warning,) = report.warnings
    assert "column 'comment'" in warning and "declare it PII" in warning
    manifest = json.loads((lake / f"manifests/ingest/tickets/{report.batch_id}.json").read_text())
    assert manifest["pii_findings"] == report.pii_findings
    assert manifest["warnings"] == [warning]
    raw = read_zone(lake, "raw/tickets")
    quarantine = read_zone(lake, "quarantine/tickets")
    assert (raw.num_rows, quarantine.num_rows) == (report.rows_accepted, report.rows_quarantined)
    if policy == UndeclaredPii.QUARANTINE:
        assert report.rows_quarantined == 2000 + out_of_range - planted_out_of_range
        assert manifest["quarantine_rules"] == {
            "pii": 2000 - planted_out_of_range,
            "range": out_of_range,
        }
        assert sorted(raw.column("comment").to_pylist()) == sorted(
            clean(2000)[i] for i in range(2000) if (2000 + i) % 97
        )
    else:
        assert report.rows_quarantined == out_of_range
        assert manifest["quarantine_rules"] == {"range": out_of_range}
    assert leaked(values, lake_text(lake)) == []
    assert leaked(values, caplog.text) == []


def test_crash_before_manifest_then_rerun(
    ray_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.shared.data import Lake

    path = write(tmp_path, "c.csv", [good(i, day=1 + i % 2) for i in range(8)])
    real = Lake.write_json

    def crash(self: Lake, target: str, value: Any, **kwargs: Any) -> None:
        if "/manifests/" in target:
            raise OSError("disk gone")
        real(self, target, value, **kwargs)

    monkeypatch.setattr(Lake, "write_json", crash)
    with pytest.raises(OSError):
        ingest(path, tmp_path / "lake")
    monkeypatch.setattr(Lake, "write_json", real)
    report = ingest(path, tmp_path / "lake")
    assert not report.skipped_as_duplicate
    assert read_zone(tmp_path / "lake", "raw/events").num_rows == 8
