"""Secure defaults: loopback binds, secrets from env or files, and the production check
that refuses an insecure configuration naming every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from entai.shared.core import ConfigError
from entai.shared.settings import EntaiSettings, load_settings

KEY = "unit-secure-defaults-key-0123456789"
SERVICE_SECRET = "unit-service-secret-0123456789abcdef"


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
            "service_secret": SERVICE_SECRET,
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


def test_production_without_a_service_secret_is_refused_naming_it(tmp_path: Path) -> None:
    settings = _production(tmp_path)
    security = settings.security.model_copy(update={"service_secret": None})
    err = _refusal(settings.model_copy(update={"security": security}))
    assert err.details["problems"] == [
        "security.service_secret (or service_secret_file) is required in production"
    ]


def test_production_with_a_wildcard_bind_is_refused_with_a_tls_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ray_tls(monkeypatch, tmp_path)
    err = _refusal(_production(tmp_path, serve={"host": "0.0.0.0"}))
    assert "serve.host=0.0.0.0" in err.message
    assert "serve.tls_note" in err.message
    assert len(err.details["problems"]) == 1


def test_every_problem_is_named_in_one_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    err = _refusal(load_settings(security={"mode": "production"}, serve={"host": "0.0.0.0"}))
    assert err.message.startswith("insecure production configuration: ")
    problems = err.details["problems"]
    assert len(problems) == 5
    for field in (
        "security.hmac_key",
        "security.policy_file",
        "security.service_secret",
        "RAY_USE_TLS",
    ):
        assert sum(field in p for p in problems) == 1, field
        assert field in err.message
    assert sum("serve.host=0.0.0.0" in p for p in problems) == 2  # no TLS note; no Ray TLS


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


def _ray_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAY_USE_TLS", "1")
    for name in ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))


def test_the_mlflow_uri_is_a_secret_and_prints_redacted() -> None:
    from pydantic import SecretStr

    from entai.shared.core import redact_url

    uri = "postgresql://mlflow:Pg-pa55-word@pg.entai.svc:5432/mlflow"
    settings = load_settings(mlflow={"tracking_uri": uri})
    assert isinstance(settings.mlflow.tracking_uri, SecretStr)
    assert "Pg-pa55-word" not in repr(settings) and "Pg-pa55-word" not in str(settings)
    assert settings.resolved().mlflow.tracking_uri.get_secret_value() == uri
    assert redact_url(uri) == "postgresql://mlflow:***@pg.entai.svc:5432/mlflow"


def test_webhook_urls_and_headers_are_secrets() -> None:
    settings = load_settings(
        monitoring={
            "webhooks": [
                {"url": "https://hooks.example/T/B/s3cr3tPath", "headers": {"X-Key": "k3y-value"}}
            ]
        }
    )
    (hook,) = settings.monitoring.webhooks
    assert hook.url.get_secret_value().endswith("s3cr3tPath")
    assert "s3cr3tPath" not in repr(settings) and "k3y-value" not in repr(settings)


def test_listeners_ray_binds_on_every_interface_are_refused_unless_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entai.shared.settings import ServeSettings, check_listeners

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    check_listeners(ServeSettings())  # gRPC off, no HAProxy: nothing beyond loopback
    with pytest.raises(ConfigError) as info:
        check_listeners(ServeSettings(grpc_port=9000))
    assert info.value.message.startswith("refusing to listen on every interface: ")
    assert "serve.grpc_port=9000" in info.value.message
    assert "serve.wildcard_listeners" in info.value.message
    with pytest.raises(ConfigError) as info:
        check_listeners(ServeSettings(), {"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert "8404" in info.value.message and "9101" in info.value.message
    both = ServeSettings(grpc_port=9000)
    with pytest.raises(ConfigError) as info:
        check_listeners(both, {"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert len(info.value.details["problems"]) == 2
    check_listeners(ServeSettings(grpc_port=9000, wildcard_listeners=True), {})
    check_listeners(ServeSettings(wildcard_listeners=True), {"RAY_SERVE_ENABLE_HA_PROXY": "1"})


def test_haproxy_through_the_loopback_launcher_needs_no_acceptance() -> None:
    from entai.shared.settings import (
        HAPROXY_FENCE_NAME,
        EntaiSettings,
        ServeSettings,
        check_listeners,
    )

    fenced = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": f"/home/me/.entai/haproxy/{HAPROXY_FENCE_NAME}",
    }
    check_listeners(ServeSettings(), fenced)
    assert EntaiSettings().exposed_listeners(fenced) == []
    for unfenced in (
        {**fenced, "RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy"},
        {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    ):
        with pytest.raises(ConfigError, match="8404"):
            check_listeners(ServeSettings(), unfenced)
        assert EntaiSettings().exposed_listeners(unfenced) == ["HAProxy's stats and metrics"]
    with pytest.raises(ConfigError, match="grpc_port"):  # the gRPC proxy is not fenced
        check_listeners(ServeSettings(grpc_port=9000), fenced)


def test_serve_options_refuse_grpc_without_the_explicit_acceptance() -> None:
    from entai.deployments.grpc_ingress import serve_options
    from entai.shared.settings import ServeSettings

    with pytest.raises(ConfigError, match="wildcard_listeners"):
        serve_options(ServeSettings(grpc_port=9000))
    options = serve_options(ServeSettings(grpc_port=9000, wildcard_listeners=True))
    assert options["grpc_options"]["port"] == 9000
    assert serve_options(ServeSettings())["http_options"] == {"host": "127.0.0.1", "port": 8000}


def test_production_listeners_beyond_loopback_need_a_fence_and_ray_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    exposed = {
        "ray": {"dashboard_host": "0.0.0.0"},
        "serve": {"host": "0.0.0.0", "tls_note": "the Gateway", "grpc_port": 9000},
    }
    err = _refusal(_production(tmp_path, **exposed))
    problems = err.details["problems"]
    assert any(
        "ray.dashboard_host=0.0.0.0" in p and "security.network_policy" in p for p in problems
    )
    assert any("serve.grpc_port=9000" in p for p in problems)
    assert any("RAY_SERVE_ENABLE_HA_PROXY=1" in p for p in problems)
    assert any("Ray's TLS is off" in p for p in problems)

    accepted = {**exposed, "serve": {**exposed["serve"], "wildcard_listeners": True}}
    err = _refusal(_production(tmp_path, **accepted))
    assert any("security.network_policy" in p for p in err.details["problems"])

    fenced = _production(tmp_path, **accepted)
    fenced = fenced.model_copy(
        update={
            "security": fenced.security.model_copy(
                update={"network_policy": "cluster/kuberay/networkpolicies.yaml"}
            )
        }
    )
    err = _refusal(fenced)
    assert [p for p in err.details["problems"] if "TLS" not in p] == []
    monkeypatch.setenv("RAY_USE_TLS", "1")
    monkeypatch.setenv("RAY_TLS_SERVER_CERT", "/tls/tls.crt")
    err = _refusal(fenced)
    assert err.details["problems"] == [
        p for p in err.details["problems"] if "RAY_TLS_SERVER_KEY, RAY_TLS_CA_CERT" in p
    ]
    _ray_tls(monkeypatch, tmp_path)
    fenced.check_secure()


def test_entai_deploy_refuses_a_serve_config_with_grpc_unless_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import entai.client as client
    from entai.actors.core import HeadInfo

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    head = HeadInfo(address="127.0.0.1:1", pgid=0, dashboard_url="http://127.0.0.1:1", log_file="")
    monkeypatch.setattr(client, "read_head", lambda settings: head)
    config = Path(__file__).resolve().parents[2] / "cluster" / "serve_config.yaml"
    with pytest.raises(ConfigError, match=r"serve\.grpc_port=9000: Ray's gRPC proxy"):
        client.deploy_serve_config(load_settings(home=tmp_path), config)
    # accepted: it gets as far as joining the (unreachable) cluster
    accepted = load_settings(home=tmp_path, serve={"wildcard_listeners": True})
    with pytest.raises(Exception) as info:
        client.deploy_serve_config(accepted, config, timeout_s=1)
    assert not isinstance(info.value, ConfigError)


def test_entai_deploy_refuses_the_shipped_config_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import entai.client as client
    from entai.actors.core import HeadInfo
    from entai.cli import app

    head = HeadInfo(address="127.0.0.1:1", pgid=0, dashboard_url="http://127.0.0.1:1", log_file="")
    monkeypatch.setattr(client, "read_head", lambda settings: head)
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.delenv("ENTAI_SERVE__WILDCARD_LISTENERS", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    result = CliRunner().invoke(app, ["deploy"])  # main() prints it as one `error:` line
    assert isinstance(result.exception, ConfigError)
    assert result.exception.message.startswith(
        "refusing to listen on every interface: serve.grpc_port=9000"
    )
