"""Secrets never leak from settings reprs and dumps or from error messages (a full demo
run's logs, console and error responses are checked in tests/e2e/test_demo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from entai.shared.core import ConfigError, EntaiError
from entai.shared.settings import load_settings, resolve_hmac_key

HMAC_KEY = "integration-hmac-key-5f2c9a7e1b3d"
REDIS_PASSWORD = "redis-pass-8d1e4b"


def test_settings_reprs_and_dumps_hide_secrets() -> None:
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
    settings = load_settings(
        security={"hmac_key": HMAC_KEY}, online_store={"type": "redis", "url": url}
    )
    for text in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        repr(settings.security),
    ):
        assert HMAC_KEY not in text and REDIS_PASSWORD not in text
    assert settings.security.resolved_hmac_key() == HMAC_KEY.encode()


def test_error_messages_hide_secrets(tmp_path: Path) -> None:
    from entai.actors.backends import RedisOnlineStore

    errors: list[EntaiError] = []
    with pytest.raises(ConfigError) as invalid:
        load_settings(security={"hmac_key": HMAC_KEY, "mode": "bogus"})
    errors.append(invalid.value)
    with pytest.raises(ConfigError) as short:
        resolve_hmac_key(load_settings(home=tmp_path, security={"hmac_key": "short-secret"}))
    errors.append(short.value)
    with pytest.raises(ConfigError) as insecure:
        load_settings(
            security={"mode": "production", "hmac_key": "x"}, serve={"host": "0.0.0.0"}
        ).check_secure()
    errors.append(insecure.value)
    with pytest.raises(EntaiError) as unreachable:
        RedisOnlineStore(f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", "p")
    errors.append(unreachable.value)
    for err in errors:
        text = f"{err} {err.details} {err!r}"
        assert HMAC_KEY not in text and "short-secret" not in text
        assert REDIS_PASSWORD not in text
