from __future__ import annotations

from pathlib import Path

import pytest

from entai.shared.core import ConfigError
from entai.shared.settings import (
    EntaiSettings,
    MemoryOnlineStoreSettings,
    RedisOnlineStoreSettings,
    SqliteOnlineStoreSettings,
    load_settings,
    resolve_service_secret,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ENTAI_"):
            monkeypatch.delenv(key)


def test_defaults_are_the_embedded_mode() -> None:
    s = load_settings()
    assert isinstance(s.online_store, SqliteOnlineStoreSettings)
    assert s.online_store.synchronous == "full" and s.online_store.path is None
    assert s.mlflow.tracking_uri.get_secret_value().startswith("sqlite:///")
    assert s.serve.host == "127.0.0.1"
    assert s.ray.dashboard_host == "127.0.0.1"


def test_env_selects_redis_store_by_type_and_hides_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENTAI_ONLINE_STORE__TYPE", "redis")
    monkeypatch.setenv("ENTAI_ONLINE_STORE__URL", "redis://:hunter2@db:6379/3")
    monkeypatch.setenv("ENTAI_ONLINE_STORE__NUM_SHARDS", "8")
    s = load_settings()
    assert isinstance(s.online_store, RedisOnlineStoreSettings)
    assert s.online_store.num_shards == 8
    assert "hunter2" not in repr(s)
    assert s.online_store.url.get_secret_value().endswith("/3")


def test_yaml_file_with_env_taking_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "entai.yaml"
    path.write_text("serve:\n  port: 9000\n  host: 127.0.0.1\nlake:\n  root: /data/lake\n")
    monkeypatch.setenv("ENTAI_SERVE__PORT", "9100")
    s = type(load_settings()).from_yaml(path)
    assert s.serve.port == 9100
    assert s.lake.root == "/data/lake"


def test_unknown_store_type_is_a_config_error_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENTAI_ONLINE_STORE__TYPE", "cassandra")
    with pytest.raises(ConfigError, match="online_store"):
        load_settings()


def test_unknown_key_in_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "entai.yaml"
    path.write_text("serve:\n  prot: 9000\n")
    with pytest.raises(ConfigError, match=r"serve\.prot"):
        type(load_settings()).from_yaml(path)


def test_production_without_key_or_policy_is_refused() -> None:
    s = load_settings(security={"mode": "production"}, serve={"host": "0.0.0.0"})
    with pytest.raises(ConfigError) as info:
        s.check_secure()
    problems = info.value.details["problems"]
    assert any("hmac_key" in p for p in problems)
    assert any("policy_file" in p for p in problems)
    assert any("service_secret" in p for p in problems)
    assert any("0.0.0.0" in p for p in problems)


def test_production_with_key_file_policy_and_loopback_passes(tmp_path: Path) -> None:
    key = tmp_path / "hmac.key"
    key.write_text("s3cr3t-key-material\n")
    s = load_settings(
        security={
            "mode": "production",
            "hmac_key_file": key,
            "policy_file": tmp_path / "p.yaml",
            "service_secret": "service-secret-0123456789abcdef",
        }
    )
    s.check_secure()
    assert s.security.resolved_hmac_key() == b"s3cr3t-key-material"


def test_store_section_without_type_is_the_sqlite_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTAI_ONLINE_STORE__NUM_SHARDS", "2")
    s = load_settings()
    assert isinstance(s.online_store, SqliteOnlineStoreSettings)
    assert s.online_store.num_shards == 2


def test_memory_store_is_still_selectable_by_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTAI_ONLINE_STORE__TYPE", "memory")
    assert isinstance(load_settings().online_store, MemoryOnlineStoreSettings)


def test_sqlite_directory_follows_home_unless_set(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "h").resolved()
    assert isinstance(s.online_store, SqliteOnlineStoreSettings)
    assert s.online_store.path == tmp_path / "h" / "online"
    own = load_settings(
        home=tmp_path / "h", online_store={"type": "sqlite", "path": "rel/dir"}
    ).resolved()
    assert isinstance(own.online_store, SqliteOnlineStoreSettings)
    assert own.online_store.path == Path("rel/dir").resolve()
    assert own.resolved() == own  # resolving twice changes nothing


def test_resolved_paths_follow_home_and_are_absolute(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "h").resolved()
    assert s.lake.root == str(tmp_path / "h" / "lake")
    assert s.mlflow.tracking_uri.get_secret_value() == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert s.security.token_file == tmp_path / "h" / "admin_token"
    explicit = load_settings(home=tmp_path, lake={"root": "s3://bucket/lake"}).resolved()
    assert explicit.lake.root == "s3://bucket/lake"


def test_production_checks_auth_key_length_dashboard_and_tls_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    s = load_settings(
        security={"mode": "production", "hmac_key": "short", "policy_file": tmp_path / "p.yaml"},
        ray={"dashboard_host": "0.0.0.0"},
    )
    with pytest.raises(ConfigError) as info:
        s.check_secure()
    problems = " | ".join(info.value.details["problems"])
    assert "RAY_AUTH_MODE=disabled" in problems
    assert "at least 16 bytes" in problems
    assert "dashboard_host=0.0.0.0" in problems
    assert "short" not in str(info.value), "the key itself must never appear in the message"
    monkeypatch.delenv("RAY_AUTH_MODE")
    behind_tls = load_settings(
        security={
            "mode": "production",
            "hmac_key": "a-key-of-sixteen-bytes-or-more",
            "policy_file": tmp_path / "p.yaml",
            "service_secret": "service-secret-0123456789abcdef",
        },
        serve={"host": "0.0.0.0", "tls_note": "TLS ends at the ingress load balancer"},
    )
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    with pytest.raises(ConfigError, match="Ray's TLS is off"):
        behind_tls.check_secure()  # a node reachable from the network talks Ray over TLS
    monkeypatch.setenv("RAY_USE_TLS", "1")
    for name in ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT"):
        monkeypatch.setenv(name, f"/etc/ray/tls/{name}")
    behind_tls.check_secure()


def test_processes_creating_the_embedded_secret_at_once_all_read_the_whole_key(
    tmp_path: Path,
) -> None:
    """Shards and governance start together on a new home: each may find the file
    missing, and none may read it before its key is written."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    for attempt in range(30):
        settings = EntaiSettings(home=tmp_path / f"home-{attempt}")
        barrier = Barrier(8)

        def resolve(settings: EntaiSettings, barrier: Barrier) -> bytes:
            barrier.wait()
            return resolve_service_secret(settings)

        with ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(resolve, [settings] * 8, [barrier] * 8))
        assert len(set(keys)) == 1 and len(keys[0]) == 64, (attempt, keys)
        assert (settings.home / "service_secret").stat().st_mode & 0o777 == 0o600
        assert [p.name for p in settings.home.iterdir()] == ["service_secret"]  # no temporaries
