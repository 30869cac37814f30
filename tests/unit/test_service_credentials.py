"""Service credentials: signed with the platform's service secret, checked without a
lookup; the secret comes from settings (production) or a 0600 file under the home."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from entai.shared.core import ConfigError
from entai.shared.governance import (
    SERVICE_PERMISSIONS,
    SERVICE_ROLE,
    Permission,
    Policy,
    service_credential,
    service_of,
    service_principal,
)
from entai.shared.settings import EntaiSettings, load_settings, resolve_service_secret

SECRET = b"unit-service-secret-0123456789abcdef"


def _field(call: object) -> str:
    with pytest.raises(ConfigError) as info:
        call()  # type: ignore[operator]
    field: str = info.value.details["field"]
    return field


def test_a_credential_names_its_service_only_under_the_right_secret() -> None:
    credential = service_credential(SECRET, "entai-model-registry")
    assert credential.startswith("entai-svc.entai-model-registry.")
    assert service_of(SECRET, credential) == "entai-model-registry"
    assert service_of(b"another-secret-0123456789abcdef", credential) is None
    mac = credential.rsplit(".", 1)[1]
    assert service_of(SECRET, f"entai-svc.retrain-policy.{mac}") is None  # renamed
    assert service_of(SECRET, credential[:-1] + ("0" if credential[-1] != "0" else "1")) is None
    assert service_of(SECRET, "entai_abcdefabcdef_" + "s" * 43) is None  # a user's token
    with pytest.raises(ValueError, match="not a service name"):
        service_credential(SECRET, "Admin")


def test_a_service_holds_exactly_the_service_permissions_and_no_policy_may_claim_it() -> None:
    policy = Policy.default()
    service = service_principal("retrain-workflow")
    assert service.roles == frozenset({SERVICE_ROLE})
    assert policy.permissions_of(service) == SERVICE_PERMISSIONS
    assert policy.authorize(service, Permission.AUDIT_WRITE, "audit").allowed
    assert policy.authorize(service, Permission.MODELS_APPROVE, "model:m").allowed
    for denied in (Permission.ADMIN, Permission.AUDIT_READ, Permission.GOVERNANCE_ERASE):
        assert not policy.authorize(service, denied, "*").allowed
    with pytest.raises(ConfigError, match="reserved"):
        Policy(2, {**policy.roles, SERVICE_ROLE: frozenset({Permission.ADMIN})}, {})


def test_the_embedded_secret_is_created_once_0600_under_the_home(tmp_path: Path) -> None:
    settings = EntaiSettings(home=tmp_path / "home").resolved()
    secret = resolve_service_secret(settings)
    path = tmp_path / "home" / "service_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32 and resolve_service_secret(settings) == secret


def test_production_requires_a_long_enough_secret_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    production = load_settings(home=tmp_path, security={"mode": "production"}).resolved()
    assert _field(lambda: resolve_service_secret(production)) == "security.service_secret"
    assert not (tmp_path / "service_secret").exists()
    monkeypatch.setenv("ENTAI_SECURITY__SERVICE_SECRET", SECRET.decode())
    configured = load_settings(home=tmp_path, security={"mode": "production"})
    assert resolve_service_secret(configured) == SECRET
    assert SECRET.decode() not in repr(configured)
    monkeypatch.setenv("ENTAI_SECURITY__SERVICE_SECRET", "short")
    short = load_settings(home=tmp_path, security={"mode": "production"})
    assert _field(lambda: resolve_service_secret(short)) == "security.service_secret"


def test_a_secret_file_under_the_lake_is_refused(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    inside = lake / "keys" / "service_secret"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(SECRET)
    settings = load_settings(
        home=tmp_path, lake={"root": str(lake)}, security={"service_secret_file": str(inside)}
    ).resolved()
    assert _field(lambda: resolve_service_secret(settings)) == "security.service_secret_file"
    home_is_lake = load_settings(home=lake, lake={"root": str(lake)}).resolved()
    assert _field(lambda: resolve_service_secret(home_is_lake)) == "security.service_secret_file"
