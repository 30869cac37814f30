"""Secrets never leak: a full demo run's logs and error responses, settings reprs and
error messages hold neither the HMAC key nor any token."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from entai.shared.errors import ConfigError, EntaiError
from entai.shared.logs import JsonFormatter
from entai.shared.masking import resolve_hmac_key
from entai.shared.settings import EntaiSettings, load_settings
from entai.shared.tokens import parse_token

PORT = 8137
HMAC_KEY = "integration-hmac-key-5f2c9a7e1b3d"
REDIS_PASSWORD = "redis-pass-8d1e4b"


def _secrets(settings: EntaiSettings) -> dict[str, str]:
    """Every secret of the demo run: tokens (and their secret parts) and HMAC keys."""
    token = settings.security.token_file.read_text().strip()
    _, secret = parse_token(token)
    found = {"admin token": token, "admin token secret": secret}
    found["hmac key"] = resolve_hmac_key(settings).decode()
    found["demo ingest hmac key"] = "entai-demo-embedded-key"
    return found


def _session_logs() -> list[Path]:
    import ray

    node = ray._private.worker._global_node
    return [p for p in Path(node.get_session_dir_path(), "logs").rglob("*") if p.is_file()]


def _teardown(settings: EntaiSettings) -> None:
    import ray
    from ray import serve

    from entai.client import service_names

    serve.shutdown()  # type: ignore[no-untyped-call]
    for name in service_names(settings):
        try:
            ray.kill(ray.get_actor(name, namespace=settings.ray.namespace))
        except ValueError:
            continue


@pytest.fixture(scope="module")
def demo(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EntaiSettings, str, list[str]]]:
    """One demo run left serving; yields its settings, captured output and HTTP errors."""
    from entai.demo.flow import run_demo

    home = tmp_path_factory.mktemp("secrets-home")
    settings = load_settings(
        home=home, serve={"port": PORT}, security={"hmac_key": HMAC_KEY}
    ).resolved()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    console = Console(file=buffer, width=120)
    demo_settings = load_settings(
        home=home / "demo", serve={"port": PORT}, security={"hmac_key": HMAC_KEY}
    ).resolved()
    try:
        summary = run_demo(settings, users=150, keep_running=True, console=console)
        responses = _error_responses(summary["urls"]["api"], demo_settings)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        _teardown(demo_settings)
    yield demo_settings, buffer.getvalue(), responses


def _error_responses(url: str, settings: EntaiSettings) -> list[str]:
    """Bodies of failing requests, some carrying the real token where it does not belong."""
    token = settings.security.token_file.read_text().strip()
    bad = token[:-4] + "AAAA"
    body = {"entities": {"user_id": [1], "category": ["books"]}}
    calls = [
        ("/v1/predict/purchase_propensity", body, None),
        ("/v1/predict/purchase_propensity", body, f"Bearer {bad}"),
        ("/v1/predict/purchase_propensity", body, f"Token {token}"),
        ("/v1/predict/no_such_model", body, f"Bearer {token}"),
        ("/v1/predict/purchase_propensity", {"entities": token}, f"Bearer {token}"),
        ("/v1/predict/purchase_propensity", {"entities": {"user_id": [token]}}, f"Bearer {token}"),
        ("/v1/features/online", {"features": [token], "entities": {}}, f"Bearer {token}"),
    ]
    out = []
    with httpx.Client(base_url=url, timeout=60.0) as client:
        for path, payload, auth in calls:
            headers = {"Authorization": auth} if auth else {}
            response = client.post(path, json=payload, headers=headers)
            assert response.status_code >= 400, (path, response.status_code)
            out.append(f"{response.status_code} {response.headers} {response.text}")
    return out


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_demo_logs_and_console_output_hold_no_secret(
    demo: tuple[EntaiSettings, str, list[str]],
) -> None:
    settings, output, _ = demo
    secrets = _secrets(settings)
    assert "predict over HTTP" in output  # the capture did see the run
    assert _leaks(output, secrets) == []


def test_ray_session_logs_hold_no_secret(demo: tuple[EntaiSettings, str, list[str]]) -> None:
    settings, _, _ = demo
    secrets = _secrets(settings)
    files = _session_logs()
    assert any("serve" in str(p) for p in files)  # Serve and actor logs are there
    leaking = {}
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        if found := _leaks(text, secrets):
            leaking[str(path)] = found
    assert leaking == {}


def test_http_error_responses_echo_no_secret(demo: tuple[EntaiSettings, str, list[str]]) -> None:
    settings, _, responses = demo
    secrets = _secrets(settings)
    assert [r.split(" ", 1)[0] for r in responses][:4] == ["401", "401", "401", "404"]
    assert [(r[:3], _leaks(r, secrets)) for r in responses] == [(r[:3], []) for r in responses]


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
    from entai.actors.redis_store import RedisOnlineStore

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
