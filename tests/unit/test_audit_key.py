"""The audit key and the anchor store come from settings, and never from the lake."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from entai.shared.core import ConfigError
from entai.shared.governance import FileAnchorStore, PostgresAnchorStore
from entai.shared.settings import (
    EntaiSettings,
    audit_anchor_store,
    load_settings,
    resolve_audit_key,
)

KEY = "unit-audit-key-0123456789abcdef"


def _field(call: object) -> str:
    with pytest.raises(ConfigError) as info:
        call()  # type: ignore[operator]
    field: str = info.value.details["field"]
    return field


def test_embedded_key_is_created_once_0600_under_the_home_and_reused(tmp_path: Path) -> None:
    settings = EntaiSettings(home=tmp_path / "home").resolved()
    key = resolve_audit_key(settings)
    path = tmp_path / "home" / "audit_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32 and resolve_audit_key(settings) == key
    assert not path.is_relative_to(Path(settings.lake.root))


def test_verifying_a_bundle_never_invents_a_key(tmp_path: Path) -> None:
    settings = EntaiSettings(home=tmp_path).resolved()
    assert _field(lambda: resolve_audit_key(settings, create=False)) == "security.audit_key"
    assert not (tmp_path / "audit_key").exists()


def test_production_requires_the_audit_key_naming_the_field(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, security={"mode": "production"}).resolved()
    assert _field(lambda: resolve_audit_key(settings)) == "security.audit_key"
    assert not (tmp_path / "audit_key").exists()


def test_configured_key_from_env_or_file_is_a_secret_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_KEY", KEY)
    settings = load_settings(home=tmp_path, security={"mode": "production"})
    assert resolve_audit_key(settings) == KEY.encode()
    assert KEY not in repr(settings)
    monkeypatch.delenv("ENTAI_SECURITY__AUDIT_KEY")
    key_file = tmp_path / "secrets" / "audit_key"
    key_file.parent.mkdir()
    key_file.write_text("short\n")
    short = load_settings(home=tmp_path, security={"audit_key_file": str(key_file)})
    assert _field(lambda: resolve_audit_key(short)) == "security.audit_key"


def test_a_key_or_anchor_file_under_the_lake_is_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    inside = lake / "keys" / "audit_key"
    inside.parent.mkdir(parents=True)
    inside.write_text(KEY)
    settings = load_settings(
        home=tmp_path, lake={"root": str(lake)}, security={"audit_key_file": str(inside)}
    ).resolved()
    assert _field(lambda: resolve_audit_key(settings)) == "security.audit_key_file"
    anchored_in_lake = load_settings(
        home=tmp_path,
        lake={"root": str(lake)},
        security={"audit_anchor": {"path": str(lake / "anchor.json")}},
    ).resolved()
    assert _field(lambda: audit_anchor_store(anchored_in_lake)) == "security.audit_anchor.path"
    home_is_lake = load_settings(home=lake, lake={"root": str(lake)}).resolved()
    assert _field(lambda: resolve_audit_key(home_is_lake)) == "security.audit_key_file"


def test_anchor_store_is_chosen_by_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = audit_anchor_store(EntaiSettings(home=tmp_path).resolved())
    assert isinstance(default, FileAnchorStore)
    assert default.path == tmp_path.resolve() / "audit_anchor.json"
    dsn = "postgresql://entai:s3cret@db:5432/entai"
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_ANCHOR__TYPE", "postgres")
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_ANCHOR__DSN", dsn)
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_ANCHOR__LOG_ID", "prod")
    settings = load_settings()
    store = audit_anchor_store(settings)
    assert isinstance(store, PostgresAnchorStore) and store.log_id == "prod"
    assert "s3cret" not in repr(settings) and "s3cret" not in store.name + repr(store)
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_ANCHOR__TABLE", "bad-name; drop")
    with pytest.raises(ConfigError, match="audit_anchor"):
        load_settings()


def test_the_platform_manifests_give_governance_the_audit_key_from_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    kuberay = Path(__file__).parents[2] / "cluster" / "kuberay"
    for name, path in (
        ("raycluster.yaml", ("spec",)),
        ("rayservice.yaml", ("spec", "rayClusterConfig")),
    ):
        spec = yaml.safe_load((kuberay / name).read_text())
        for key in path:
            spec = spec[key]
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in head["env"]}
        ref = env["ENTAI_SECURITY__AUDIT_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "entai-secrets", "key": "audit-key"}, name
    monkeypatch.setenv("ENTAI_SECURITY__AUDIT_KEY", "k" * 64)
    settings = load_settings(home=tmp_path, security={"mode": "production"})
    assert resolve_audit_key(settings) == b"k" * 64
