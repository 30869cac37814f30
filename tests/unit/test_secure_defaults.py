"""Secure defaults: loopback binds, secrets from env or files, and the production check
that refuses an insecure configuration naming every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from entai.shared.core import ConfigError
from entai.shared.settings import EntaiSettings, load_settings

KEY = "unit-secure-defaults-key-0123456789"


def _refusal(settings: EntaiSettings) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        settings.check_secure()
    return info.value


def _production(tmp_path: Path, **overrides: object) -> EntaiSettings:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nroles: {}\nprincipals: {}\n")
    key_file = tmp_path / "hmac_key"
    key_file.write_text(KEY + "\n")
    base: dict[str, object] = {
        "security": {
            "mode": "production",
            "hmac_key_file": str(key_file),
            "policy_file": str(policy),
        }
    }
    return load_settings(**{**base, **overrides})


def test_every_port_binds_loopback_by_default() -> None:
    settings = load_settings()
    assert settings.serve.host == "127.0.0.1"
    assert settings.ray.dashboard_host == "127.0.0.1"
    assert settings.security.mode == "embedded"


def test_a_secure_production_configuration_passes(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    settings.check_secure()
    assert settings.security.resolved_hmac_key() == KEY.encode()


def test_production_without_hmac_key_is_refused_naming_it(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    security = settings.security.model_copy(update={"hmac_key_file": None})
    err = _refusal(settings.model_copy(update={"security": security}))
    assert "security.hmac_key" in err.message
    assert err.details["problems"] == [p for p in err.details["problems"] if "hmac_key" in p]


def test_production_with_a_wildcard_bind_is_refused_with_a_tls_note(tmp_path: Path) -> None:
    err = _refusal(_production(tmp_path, serve={"host": "0.0.0.0"}))
    assert "serve.host=0.0.0.0" in err.message
    assert "TLS" in err.message
    assert len(err.details["problems"]) == 1


def test_every_problem_is_named_in_one_refusal() -> None:
    err = _refusal(load_settings(security={"mode": "production"}, serve={"host": "0.0.0.0"}))
    assert err.message.startswith("insecure production configuration: ")
    problems = err.details["problems"]
    assert len(problems) == 3
    for field in ("security.hmac_key", "security.policy_file", "serve.host"):
        assert sum(field in p for p in problems) == 1, field
        assert field in err.message


def test_embedded_mode_is_not_refused() -> None:
    load_settings().check_secure()


def test_secrets_come_from_env_or_files_and_stay_out_of_reprs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTAI_SECURITY__HMAC_KEY", KEY)
    from_env = load_settings()
    assert from_env.security.resolved_hmac_key() == KEY.encode()
    assert KEY not in repr(from_env) and KEY not in str(from_env.model_dump())
    monkeypatch.delenv("ENTAI_SECURITY__HMAC_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    from_file = load_settings(security={"hmac_key_file": str(key_file)})
    assert from_file.security.resolved_hmac_key() == KEY.encode()


def test_an_unreadable_key_file_error_names_the_field_not_a_secret(tmp_path: Path) -> None:
    settings = load_settings(security={"hmac_key_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as info:
        settings.security.resolved_hmac_key()
    assert info.value.details == {"field": "security.hmac_key_file"}
