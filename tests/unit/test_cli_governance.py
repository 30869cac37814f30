"""`entai tokens` and `entai audit` against a local governance instance (platform down)."""

from __future__ import annotations

import os
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


def _delete_renumber_rehash(log: Path) -> None:
    """The attack seen on main: delete entry 3, renumber, plain SHA-256 again, new .head."""
    import hashlib
    import json

    from entai.shared.governance import GENESIS_HASH, canonical_json

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    del rows[2]
    prev, out = GENESIS_HASH, []
    for seq, row in enumerate(rows, start=1):
        body = {k: v for k, v in row.items() if k != "hash"} | {"seq": seq, "prev_hash": prev}
        prev = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        out.append(canonical_json({**body, "hash": prev}) + "\n")
    log.write_text("".join(out))
    log.with_name(log.name + ".head").write_text(json.dumps({"seq": len(rows), "hash": prev}))


def _some_history(runner: CliRunner) -> Path:
    for who in ("analyst", "app", "analyst", "app"):
        assert runner.invoke(app, ["tokens", "create", who]).exit_code == 0
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    return next(Path(os.environ["ENTAI_HOME"], "lake").rglob("audit.jsonl"))


def test_verify_finds_a_deleted_entry_after_renumbering_rehashing_and_a_new_head(
    home: Path,
) -> None:
    runner = CliRunner()
    log = _some_history(runner)
    assert not (home / "lake" / "audit" / "audit.jsonl.head").exists()
    _delete_renumber_rehash(log)
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "NOT intact" in result.output and "at entry 1:" in result.output
    assert "plain SHA-256" in result.output


def test_verify_finds_it_when_the_anchor_file_is_replaced_too(home: Path) -> None:
    import json

    from entai.shared.governance import sign_anchor

    runner = CliRunner()
    log = _some_history(runner)
    _delete_renumber_rehash(log)
    last = json.loads(log.read_text().splitlines()[-1])
    forged = sign_anchor(
        b"not-the-key-but-long-enough-0123456789",
        seq=last["seq"],
        digest=last["hash"],
        keyed_from=1,
        size=log.stat().st_size,
    )
    (home / "audit_anchor.json").write_text(forged.to_json())
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "NOT intact" in result.output and "at entry 1:" in result.output


def test_verify_finds_a_cut_tail(home: Path) -> None:
    runner = CliRunner()
    log = _some_history(runner)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-2]))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert f"at entry {len(lines) - 1}:" in result.output and "tail truncated" in result.output


def test_export_writes_a_bundle_that_verifies_and_a_changed_one_does_not(
    home: Path, tmp_path: Path
) -> None:
    import stat

    runner = CliRunner()
    _some_history(runner)
    bundle = tmp_path / "out" / "audit-bundle.zip"
    exported = runner.invoke(app, ["audit", "export", "--output", str(bundle)])
    assert exported.exit_code == 0, exported.output
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    verified = runner.invoke(app, ["audit", "verify", "--bundle", str(bundle)])
    assert verified.exit_code == 0, verified.output
    assert "chain intact" in verified.output
    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0xFF
    bundle.write_bytes(bytes(data))
    broken = runner.invoke(app, ["audit", "verify", "--bundle", str(bundle)])
    assert broken.exit_code == 1 and "NOT intact" in broken.output


def test_a_legacy_unkeyed_log_is_taken_over_and_reported(home: Path) -> None:
    import hashlib
    import json

    from entai.shared.governance import GENESIS_HASH, canonical_json

    runner = CliRunner()
    log = home / "lake" / "audit" / "audit.jsonl"
    log.parent.mkdir(parents=True)
    prev, out = GENESIS_HASH, []
    for seq in (1, 2, 3):
        body = {
            "seq": seq,
            "ts": f"2026-01-0{seq}T00:00:00.000000+00:00",
            "principal": "admin",
            "action": "tokens:create",
            "resource": f"token:{seq}",
            "decision": "allow",
            "request_id": None,
            "details": {},
            "prev_hash": prev,
        }
        prev = hashlib.sha256(canonical_json(body).encode()).hexdigest()
        out.append(canonical_json({**body, "hash": prev}) + "\n")
    log.write_text("".join(out))
    (log.parent / "audit.jsonl.head").write_text(json.dumps({"seq": 3, "hash": prev}))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output and "entries 1..3 are legacy unkeyed" in result.output
