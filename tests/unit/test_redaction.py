"""The log redaction: configured secrets, URL passwords, bearer and entai tokens leave no
trace in log lines (message, arguments, extras, tracebacks), error bodies or printed URLs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from entai.shared.core import (
    JsonFormatter,
    RedactingFilter,
    ServiceUnavailableError,
    configure_logging,
    install_redaction,
    redact,
    redact_hosts,
    redact_url,
    register_secret,
    register_url_secrets,
)
from entai.shared.settings import load_settings

TOKEN = "entai_0123456789ab_" + "Q" * 40 + "x-_"
HMAC = "unit-redaction-hmac-key-5f1e2d3c"


def test_a_url_keeps_its_user_and_host_and_loses_its_password() -> None:
    assert (
        redact_url("postgresql://entai:pg-S3cret@db.internal:5432/mlflow")
        == "postgresql://entai:***@db.internal:5432/mlflow"
    )
    assert redact_url("rediss://:hunter2hunter2@redis:6380/0") == "rediss://:***@redis:6380/0"
    assert redact_url("sqlite:////home/u/.entai/mlflow.db") == "sqlite:////home/u/.entai/mlflow.db"
    assert (
        redact_url("https://hooks.example/x?token=abc123&channel=ops")
        == "https://hooks.example/x?token=***&channel=ops"
    )
    assert (
        redact("host=pg dbname=entai user=entai password='two words' sslmode=require")
        == "host=pg dbname=entai user=entai password=*** sslmode=require"
    )


def test_tokens_lose_their_secret_and_keep_their_public_id() -> None:
    text = f"Authorization: Bearer {TOKEN}; bare {TOKEN}."
    assert redact(text) == "Authorization: Bearer ***; bare entai_0123456789ab_***."
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert redact(f"authorization: bearer {jwt}") == "authorization: bearer ***"
    # prose is not a credential
    assert redact("missing bearer token") == "missing bearer token"


def test_registered_secrets_are_replaced_longest_first_and_short_values_ignored() -> None:
    register_secret("unit-secret-abc")
    register_secret("unit-secret-abc-and-more")
    register_secret("short")  # under 8 characters: would redact ordinary words
    assert redact("a unit-secret-abc-and-more b unit-secret-abc") == "a *** b ***"
    assert redact("short words stay") == "short words stay"


def test_webhook_urls_are_secret_whole_and_by_their_path() -> None:
    register_url_secrets("https://hooks.chat.example/services/T0UNIT/B0UNIT/zYxWvUtSrQ")
    assert "zYxWvUtSrQ" not in redact(
        "POST https://hooks.chat.example/services/T0UNIT/B0UNIT/zYxWvUtSrQ"
    )
    assert redact("path /services/T0UNIT/B0UNIT/zYxWvUtSrQ failed") == "path *** failed"


def test_host_and_port_pairs_leave_5xx_texts() -> None:
    text = "Error 111 connecting to 127.0.0.1:6379. Also redis.entai.svc:6380, [::1]:9000."
    assert redact_hosts(text) == "Error 111 connecting to <host>. Also <host>, <host>."
    assert redact_hosts("model purchase_propensity:3 at 12:30") == (
        "model purchase_propensity:3 at 12:30"
    )


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("entai.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_the_filter_redacts_message_arguments_extras_and_tracebacks(
    stream_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = stream_logger
    register_secret(HMAC)
    dsn = "postgresql://entai:pg-S3cret@db:5432/mlflow"
    logger.info("connecting to %s with key %s", dsn, HMAC, extra={"headers": {"auth": TOKEN}})
    try:
        raise ServiceUnavailableError(f"cannot reach {dsn} (Bearer {TOKEN})")
    except ServiceUnavailableError:
        logger.exception("failed")
    text = stream.getvalue()
    for secret in ("pg-S3cret", HMAC, TOKEN):
        assert secret not in text
    first, second = _lines(stream)
    assert first["message"] == "connecting to postgresql://entai:***@db:5432/mlflow with key ***"
    assert first["headers"] == {"auth": "entai_0123456789ab_***"}
    assert "ServiceUnavailableError: cannot reach postgresql://entai:***@db" in str(second["exc"])
    assert "Bearer ***" in str(second["exc"])


def test_configured_logging_redacts_every_logger_in_file_and_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = root.level
    log_file = tmp_path / "entai.log"
    register_secret(HMAC)
    try:
        configure_logging("INFO", log_file=log_file, console=True)
        # a library's logger, an f-string message, an extra: all redacted
        logging.getLogger("somelib").warning(f"retrying with {TOKEN}", extra={"dsn": HMAC})
        logging.getLogger("somelib").warning("key %s", HMAC, extra={"dsn": HMAC})
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_entai_json_handler", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before)
    console = capsys.readouterr().err
    written = log_file.read_text()
    for text in (console, written):
        assert TOKEN not in text and HMAC not in text
        assert "retrying with entai_0123456789ab_***" in text
        assert '"message": "key ***"' in text


def test_the_record_factory_redacts_records_for_handlers_entai_did_not_install() -> None:
    install_redaction()
    register_secret(HMAC)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("entai.test.factory")
    keep = Keep()
    logger.addHandler(keep)
    try:
        logger.warning("key=%s url=%s", HMAC, "redis://:r3dis-pass@r:6379/0")
    finally:
        logger.removeHandler(keep)
    assert records[0].getMessage() == "key=*** url=redis://:***@r:6379/0"


def test_settings_register_their_secrets_when_built() -> None:
    settings = load_settings(
        mlflow={"tracking_uri": "postgresql://mlflow:mlflow-Pa55word@pg:5432/mlflow"},
        online_store={"type": "redis", "url": "redis://:redis-Pa55word@redis:6379/0"},
        security={"hmac_key": "settings-hmac-key-0123456789"},
        monitoring={
            "webhooks": [
                {
                    "url": "https://hooks.example/services/T1/B1/hookSecretPath",
                    "headers": {"Authorization": "Bearer header-token-0123456789abcdef"},
                }
            ]
        },
    )
    text = redact(
        "mlflow-Pa55word redis-Pa55word settings-hmac-key-0123456789 "
        "/services/T1/B1/hookSecretPath header-token-0123456789abcdef"
    )
    assert text == "*** *** *** *** ***"
    shown = repr(settings)
    for secret in ("mlflow-Pa55word", "redis-Pa55word", "hookSecretPath", "header-token"):
        assert secret not in shown
