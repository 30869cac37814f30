"""`entai up` -> `entai status` -> `entai down` leaves no Ray process of ours behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _user_home(home: Path) -> str:
    """A fresh user home: no Ray token yet, so `entai up` must create one."""
    (home / "user").mkdir(exist_ok=True)
    return str(home / "user")


def _entai(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": _user_home(home),
        "ENTAI_HOME": str(home),
        "ENTAI_RAY__DASHBOARD_PORT": "8277",
        "ENTAI_RAY__NUM_CPUS": "1",
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "2",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    entai = str(Path(sys.executable).with_name("entai"))
    return subprocess.run(
        [entai, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


_CLIENT_READ = """
import entai
from entai.shared.errors import AuthenticationError
client = entai.connect()
out = client.features.get_online_features({"v": ["f"]}, [{"user_id": 1}], {"v": None})
print(out["results"][0]["statuses"][0])
bad = entai.connect(token="entai_000000000000_" + "x" * 43)
try:
    bad.features.get_online_features({"v": ["f"]}, [{"user_id": 1}], {"v": None})
except AuthenticationError as exc:
    print(type(exc).__name__)
"""


def _python(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": _user_home(home),
        "ENTAI_HOME": str(home),
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "2",
    }
    env.pop("ENTAI_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_status_down(tmp_path: Path) -> None:
    up = _entai(tmp_path, "up", "--gcs-port", "6391")
    state_file = tmp_path / "cluster.json"
    if up.returncode != 0:
        _entai(tmp_path, "down")
    assert up.returncode == 0, up.stdout + up.stderr
    pgid = json.loads(state_file.read_text())["pgid"]
    # The head runs with token auth even on a machine that never had a Ray token.
    assert (tmp_path / "user" / ".ray" / "auth_token").stat().st_size > 0
    try:
        assert "127.0.0.1:6391" in up.stdout
        status = _entai(tmp_path, "status")
        assert status.returncode == 0, status.stderr
        for name in (
            "entai-feature-shard-0",
            "entai-feature-shard-1",
            "entai-governance",
            "entai-model-registry",
            "entai-drift-monitor",
            "entai-retrain-worker",
        ):
            assert name in status.stdout
        assert status.stdout.count("ALIVE") == 6
        client = _python(tmp_path, _CLIENT_READ)
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == ["NOT_FOUND", "AuthenticationError"]
    finally:
        down = _entai(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert "entai stopped" in down.stdout
    assert not _group_alive(pgid), "a process of the head's group survived `entai down`"
    assert not (tmp_path / "cluster.json").exists()
    again = _entai(tmp_path, "status")
    assert "not running" in again.stdout
