"""`entai tokens` and `entai audit` against a local governance instance (platform down)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from entai.cli import app
from entai.shared.core import PermissionDeniedError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.delenv("ENTAI_TOKEN", raising=False)
    return tmp_path


def test_token_lifecycle_and_audit(home: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["tokens", "create", "app", "--ttl-hours", "1"])
    assert created.exit_code == 0, created.output
    secret = next(line for line in created.output.splitlines() if line.startswith("entai_"))
    assert secret.startswith("entai_")
    listed = runner.invoke(app, ["tokens", "list"])
    assert listed.exit_code == 0
    assert "app" in listed.output and secret not in listed.output
    token_id = secret.split("_")[1]
    denied = runner.invoke(app, ["tokens", "list", "--token", secret])
    assert isinstance(denied.exception, PermissionDeniedError)
    assert "requires permission admin" in str(denied.exception)
    revoked = runner.invoke(app, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0 and token_id in revoked.output
    verify = runner.invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0, verify.output
    assert "chain intact" in verify.output
    query = runner.invoke(app, ["audit", "query", "--action", "tokens:revoke"])
    assert query.exit_code == 0
    assert "tokens:revoke" in query.output or "revoke" in query.output


def test_tampered_audit_log_fails_verify(home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["tokens", "create", "analyst"]).exit_code == 0
    log = next((home / "lake").rglob("*.jsonl"))
    lines = log.read_text().splitlines()
    lines[0] = lines[0].replace('"admin"', '"admon"', 1)
    log.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "NOT intact" in result.output and "entry 1" in result.output
