"""No secret of a running platform reaches the console, the log file, the Ray session's
logs or an error body, including while a dependency fails.

One platform for the module (the Serve application of test_serve_http.py on port 8133)
whose every secret is real and used:

- the MLflow tracking URI is a PostgreSQL DSN with a password (the local server trusts
  loopback, so the password is sent and ignored), in a database of the test's own;
- the online store is the machine's Redis behind an ACL user of the test's own with a
  password, restricted to the test's key prefix (the Ingress reads Redis directly);
- the HMAC key, the admin and application tokens;
- two alert webhooks whose path, query and header are secrets: one a local receiver,
  one a closed port (its failures are logged by the DriftMonitor actor).

Besides what the platform logs on its own, the DriftMonitor actor is made to log the
secrets outright and to raise an exception naming them, which the driver logs: the
redaction must catch records made in Ray's worker processes, not only in the driver.
The failing dependency: the ACL user is switched off and its connections killed, so
every online read fails until it is switched back on; the 503 bodies of that window
must name neither the password nor Redis's address.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_http import MODEL, Platform, deploy_platform, predict_body, teardown_platform

from entai.shared.core import configure_logging
from entai.shared.governance import parse_token

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

PORT = 8133
REDIS_PASSWORD = "redis-acl-Pa55-7c1e9b"
PG_PASSWORD = "mlflow-pg-Pa55-3f8a2d"
HMAC_KEY = "platform-secrets-hmac-key-9e4b1a"
HOOK_PATH = "T0SECRET/B0SECRET/hookPathSecret4242"
HOOK_QUERY_TOKEN = "hookQueryToken-5d2e"
HOOK_HEADER = "hook-header-bearer-0123456789abcdef"


@dataclass
class Run:
    platform: Platform
    console: str
    log_file: Path
    bodies: list[str]
    secrets: dict[str, str]
    hook_calls: list[str]
    outage_statuses: list[int]


HOOK_CALLS: list[str] = []


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        HOOK_CALLS.append(f"{self.path} {self.headers.get('Authorization')}")
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _acl_user(redis_url: str, user: str, prefix: str, *, on: bool) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.acl_setuser(
            user,
            enabled=on,
            passwords=[f"+{REDIS_PASSWORD}"],
            keys=[f"{prefix}*"],
            channels=["*"],
            commands=["+@all"],
            reset_keys=True,
        )
        if not on:
            client.client_kill_filter(user=user)
    finally:
        client.close()


def _log_secrets_in_the_actor(monitor: Any, dsn: str, token: str) -> None:
    """Make the DriftMonitor actor log the secrets and raise an error naming them."""
    import ray

    def leak(_: Any) -> None:
        log = logging.getLogger("entai.test.secrets")
        log.warning("connecting to %s with Authorization: Bearer %s", dsn, token)
        log.warning(f"hmac key {HMAC_KEY} in an f-string", extra={"dsn": dsn})
        raise RuntimeError(f"cannot use {dsn} or key {HMAC_KEY} for {token}")

    with pytest.raises(ray.exceptions.RayTaskError) as info:
        ray.get(monitor.__ray_call__.remote(leak), timeout=120)
    logging.getLogger("entai.test.secrets").error("the actor failed", exc_info=info.value)


def _send_test_alert(monitor: Any) -> None:
    import ray

    from entai.shared.core import ServiceUnavailableError

    def alert(actor: Any) -> str:
        try:
            actor._sink.send({"model": MODEL, "level": "alert", "window_id": "secrets-test"})
        except ServiceUnavailableError as exc:  # the closed-port webhook
            logging.getLogger("entai.test.secrets").warning("alert sink failed: %s", exc)
            return exc.message
        return ""

    failure = ray.get(monitor.__ray_call__.remote(alert), timeout=120)
    logging.getLogger("entai.test.secrets").warning("alert sink: %s", failure)


@pytest.fixture(scope="module")
def run(
    ray_cluster: Any,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_dsn: str,
    redis_url: str,
    run_id: str,
) -> Iterator[Run]:
    import psycopg2
    import ray

    from entai.actors.monitoring import start_drift_monitor

    tmp = tmp_path_factory.mktemp("secrets-platform")
    user = f"entai-secrets-{run_id}"
    prefix = f"entai-test:{run_id}:secrets"
    _acl_user(redis_url, user, prefix, on=True)
    database = f"entai_secrets_{run_id}"
    admin = psycopg2.connect(postgres_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}/{HOOK_PATH}?token={HOOK_QUERY_TOKEN}"
    closed_url = f"http://127.0.0.1:9/{HOOK_PATH}/closed?token={HOOK_QUERY_TOKEN}"
    dsn = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:5432/{database}"
    headers = {"Authorization": f"Bearer {HOOK_HEADER}"}
    sections = {
        "mlflow": {"tracking_uri": dsn, "artifact_root": str(tmp / "artifacts")},
        "online_store": {
            "type": "redis",
            "url": f"redis://{user}:{REDIS_PASSWORD}@127.0.0.1:6379/0",
            "key_prefix": prefix,
        },
        "monitoring": {
            "webhooks": [
                {"url": hook_url, "headers": headers},
                {"url": closed_url, "headers": headers, "timeout_s": 0.5, "retries": 1},
            ]
        },
    }
    console = io.StringIO()
    log_file = tmp / "logs" / "entai.log"
    stderr, root_level = sys.stderr, logging.getLogger().level
    sys.stderr = console  # entai's console handler writes to sys.stderr at emit time
    configure_logging("DEBUG", log_file=log_file, console=True)
    platform: Platform | None = None
    try:
        platform = deploy_platform(
            tmp,
            port=PORT,
            shadow=False,
            security={"hmac_key": HMAC_KEY},
            serve_settings={"online_read_timeout_s": 2.0, "breaker_open_s": 1.0},
            settings_overrides=sections,
        )
        settings = platform.settings
        monitor = start_drift_monitor(settings, settings.ray.namespace)
        platform.actors.append(monitor)
        _send_test_alert(monitor)
        _log_secrets_in_the_actor(monitor, dsn, platform.app_token)
        bodies, statuses = _requests(platform, redis_url, user, prefix)
    finally:
        sys.stderr = stderr
        for handler in [
            h for h in logging.getLogger().handlers if getattr(h, "_entai_json_handler", False)
        ]:
            logging.getLogger().removeHandler(handler)
            handler.close()
        logging.getLogger().setLevel(root_level)
        if platform is not None:
            teardown_platform(platform)
        hook.shutdown()
        _acl_user(redis_url, user, prefix, on=False)
        import redis

        client = redis.Redis.from_url(redis_url)
        client.acl_deluser(user)
        client.close()
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{database}"')
        admin.close()
    secrets = {
        "redis password": REDIS_PASSWORD,
        "mlflow dsn password": PG_PASSWORD,
        "hmac key": HMAC_KEY,
        "webhook path": HOOK_PATH,
        "webhook query token": HOOK_QUERY_TOKEN,
        "webhook header": HOOK_HEADER,
    }
    for name, token in (("admin token", platform.admin), ("app token", platform.app_token)):
        secrets[name] = token
        secrets[f"{name} secret"] = parse_token(token)[1]
    assert ray.is_initialized()
    yield Run(platform, console.getvalue(), log_file, bodies, secrets, list(HOOK_CALLS), statuses)


def _requests(
    platform: Platform, redis_url: str, user: str, prefix: str
) -> tuple[list[str], list[int]]:
    """Error bodies: tokens where they do not belong, then the Redis outage's 503s."""
    bodies: list[str] = []
    body = predict_body(1, "books")
    with httpx.Client(base_url=platform.url, timeout=60.0) as client:
        ok = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
        assert ok.status_code == 200, ok.text
        token = platform.app_token
        for headers, payload in (
            ({"Authorization": f"Token {token}"}, body),
            ({"Authorization": f"Bearer {token[:-4]}AAAA"}, body),
            (platform.headers(), {"entities": {"user_id": [token]}}),
        ):
            response = client.post(f"/v1/predict/{MODEL}", json=payload, headers=headers)
            assert response.status_code in (401, 422), response.text
            bodies.append(f"{response.status_code} {response.headers} {response.text}")
        _acl_user(redis_url, user, prefix, on=False)
        statuses: list[int] = []
        try:
            for _ in range(6):
                response = client.post(
                    f"/v1/predict/{MODEL}", json=body, headers=platform.headers()
                )
                statuses.append(response.status_code)
                bodies.append(f"{response.status_code} {response.headers} {response.text}")
        finally:
            _acl_user(redis_url, user, prefix, on=True)
        deadline = time.monotonic() + 60
        while True:  # it recovers by itself once Redis lets the user in again
            response = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        statuses.append(response.status_code)
    return bodies, statuses


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_the_webhook_got_the_alert_at_its_secret_url(run: Run) -> None:
    assert run.hook_calls == [f"/{HOOK_PATH}?token={HOOK_QUERY_TOKEN} Bearer {HOOK_HEADER}"]


def test_the_outage_answers_503_and_recovers(run: Run) -> None:
    *outage, after = run.outage_statuses
    assert set(outage) == {503}, outage
    assert after == 200


def test_error_bodies_hold_no_secret_and_no_redis_address(run: Run) -> None:
    unavailable = [b for b in run.bodies if b.startswith("503")]
    assert unavailable
    for body in run.bodies:
        assert _leaks(body, run.secrets) == [], body
    for body in unavailable:
        assert "6379" not in body and "127.0.0.1" not in body.split("}", 1)[-1], body


def test_console_and_log_file_hold_no_secret(run: Run) -> None:
    written = run.log_file.read_text()
    # the driver did log the actor's failure, and what it logged is redacted
    assert "the actor failed" in written and "the actor failed" in run.console
    assert "postgresql://postgres:***@127.0.0.1:5432" in written
    assert _leaks(run.console, run.secrets) == []
    assert _leaks(written, run.secrets) == []


def test_the_ray_session_logs_hold_no_secret(run: Run) -> None:
    import ray

    node = ray._private.worker._global_node
    files = [p for p in Path(node.get_session_dir_path(), "logs").rglob("*") if p.is_file()]
    texts = {p: p.read_bytes().decode("utf-8", "replace") for p in files}
    # the actor's own records are there, redacted
    redacted = [p for p, t in texts.items() if "hmac key *** in an f-string" in t]
    assert redacted, "the DriftMonitor's records are not in the session logs"
    assert any("alert sink failed: " in t for t in texts.values())
    leaking = {str(p): found for p, t in texts.items() if (found := _leaks(t, run.secrets))}
    assert leaking == {}
