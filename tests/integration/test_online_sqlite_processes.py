"""The SQLite online store across processes: every write a killed writer acknowledged is
readable, and another process reads committed writes in place (the serving replicas'
path). Each test starts Python processes that import entai (seconds each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from entai.actors.backends import SqliteOnlineStore
from entai.shared.features import FeatureRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

# A writer in its own process: prints each batch number once write() has returned.
WRITER = """
import sys
from datetime import UTC, datetime
from entai.actors.backends import SqliteOnlineStore
from entai.shared.features import FeatureRow
store = SqliteOnlineStore(sys.argv[1], ["s0", "s1"])
t0 = datetime(2026, 1, 1, tzinfo=UTC)
for batch in range(100_000):
    store.write([FeatureRow("v", f"k{batch}-{j}", {"x": batch}, t0, t0) for j in range(3)])
    print(batch, flush=True)
"""

# A reader in its own process: prints the values and statuses of x for the keys on argv.
READER = """
import json, sys
from datetime import UTC, datetime
from entai.actors.backends import SqliteOnlineStore
store = SqliteOnlineStore(sys.argv[1], ["s0", "s1"])
res = store.read("v", sys.argv[2:], ["x"], ttl=None, now=datetime(2026, 1, 1, tzinfo=UTC))
print(json.dumps([res.values[0], [str(s) for s in res.statuses[0]]]))
"""


def row(key: str, ev: float, **values: object) -> FeatureRow:
    return FeatureRow("v", key, values, T0 + timedelta(seconds=ev), T0)


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """``code`` in a new Python process that imports this checkout's entai."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE)


def test_every_acknowledged_write_survives_a_killed_writer(tmp_path: Path) -> None:
    writer = python(WRITER, str(tmp_path))
    assert writer.stdout is not None
    acked = [int(writer.stdout.readline()) for _ in range(200)]
    os.kill(writer.pid, signal.SIGKILL)  # mid-stream: a batch may be half-way through
    acked += [int(line) for line in writer.stdout.read().split()]
    writer.wait()
    assert writer.returncode == -signal.SIGKILL and acked == list(range(len(acked)))

    store = SqliteOnlineStore(tmp_path, ["s0", "s1"])
    keys = [f"k{b}-{j}" for b in acked for j in range(3)]
    res = store.read("v", keys, ["x"], ttl=None, now=T0)
    assert res.values == [[b for b in acked for _ in range(3)]]
    # Beyond the acknowledged ones, at most rows of the batch in flight (each file
    # commits its part of a batch on its own).
    extra = {r.entity_key for r in store.scan()} - set(keys)
    assert extra <= {f"k{len(acked)}-{j}" for j in range(3)}


def test_another_process_reads_committed_writes_in_place(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path, ["s0", "s1"])
    store.write([row(f"k{i}", 1, x=i) for i in range(6)] + [row("n", 1, x=None)])
    reader = python(READER, str(tmp_path), "k5", "nope", "k0", "n")
    out, _ = reader.communicate(timeout=120)
    assert json.loads(out) == [
        [5, None, 0, None],
        ["PRESENT", "NOT_FOUND", "PRESENT", "NULL_VALUE"],
    ]
    store.write([row("k5", 2, x=50)])  # a newer version, committed: the next read sees it
    reader = python(READER, str(tmp_path), "k5")
    assert json.loads(reader.communicate(timeout=120)[0])[0] == [50]
