"""The first admin token: `GovernanceChecker.bootstrap_admin` and the token store's marker.

Production mode with the file store (a local lake): the service mints the first admin
token only for the configured bootstrap secret, only once, only for an admin of the
policy, and audits every attempt. The embedded mode's automatic admin token counts as
the bootstrap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from entai.actors.governance import GovernanceChecker
from entai.shared.core import AuthenticationError, ConfigError, ConflictError
from entai.shared.governance import AuditLog, TokenStore
from entai.shared.settings import EntaiSettings, load_settings

SECRET = "bootstrap-secret-0123456789abcdef"
POLICY = """
version: 1
roles:
  admin: [admin]
  analyst: [features:read]
principals:
  root: {roles: [admin]}
  alice: {roles: [analyst]}
"""


def _production(tmp_path: Path, **security: object) -> EntaiSettings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        security={
            "mode": "production",
            "policy_file": str(policy),
            "audit_key": "audit-key-0123456789abcdef",
            "service_secret": "service-secret-0123456789abcdef",
            **security,
        },
    ).resolved()


def _bootstrap_entries(settings: EntaiSettings) -> list[tuple[str, str]]:
    log = AuditLog.in_lake(settings.lake.root)
    return [(e.decision, e.principal) for e in log.query(action="tokens:bootstrap")]


def test_the_first_admin_token_is_minted_once_for_the_secret(tmp_path: Path) -> None:
    settings = _production(tmp_path, bootstrap_secret=SECRET)
    governance = GovernanceChecker(settings)
    assert not TokenStore(settings.home / "tokens").list()  # production mints none by itself

    with pytest.raises(AuthenticationError, match="bootstrap secret is wrong"):
        governance.bootstrap_admin("not-the-secret-0123456789", "root")
    with pytest.raises(ConfigError, match="'alice' does not hold the admin role"):
        governance.bootstrap_admin(SECRET, "alice")
    token, record = governance.bootstrap_admin(SECRET + "\n", "root")
    assert record.principal == "root"
    assert governance.authenticate(token).name == "root"
    assert [r.token_id for r in governance.list_tokens(token)] == [record.token_id]

    with pytest.raises(ConflictError, match=f"already created \\({record.token_id} for root"):
        governance.bootstrap_admin(SECRET, "root")
    # A restarted service (a new instance over the same store) refuses it too.
    with pytest.raises(ConflictError, match="already created"):
        GovernanceChecker(settings).bootstrap_admin(SECRET, "root")
    assert _bootstrap_entries(settings) == [
        ("deny", "anonymous"),
        ("allow", "system"),
        ("deny", "anonymous"),
        ("deny", "anonymous"),
    ]


def test_without_a_configured_secret_bootstrap_is_refused(tmp_path: Path) -> None:
    governance = GovernanceChecker(_production(tmp_path))
    with pytest.raises(ConfigError, match="no bootstrap secret"):
        governance.bootstrap_admin(SECRET, "root")
    short = GovernanceChecker(_production(tmp_path / "short", bootstrap_secret="short"))
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        short.bootstrap_admin("short", "root")


def test_without_a_service_secret_the_production_service_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        GovernanceChecker(_production(tmp_path, service_secret=None))
    assert info.value.details["field"] == "security.service_secret"
    assert not (tmp_path / "home" / "service_secret").exists()  # none invented


def test_the_secret_may_come_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "bootstrap-secret"
    secret_file.write_text(SECRET + "\n")
    settings = _production(tmp_path, bootstrap_secret_file=str(secret_file))
    _, record = GovernanceChecker(settings).bootstrap_admin(SECRET, "root")
    assert record.principal == "root"


def test_the_embedded_admin_token_counts_as_the_bootstrap(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path / "home",
        lake={"root": str(tmp_path / "lake")},
        security={"bootstrap_secret": SECRET},
    ).resolved()
    governance = GovernanceChecker(settings)
    admin = settings.security.token_file.read_text().strip()
    with pytest.raises(ConflictError, match="already created"):
        governance.bootstrap_admin(SECRET, "admin")
    assert [r.principal for r in governance.list_tokens(admin)] == ["admin"]


def test_an_existing_admin_token_without_a_marker_refuses_bootstrap(tmp_path: Path) -> None:
    settings = _production(tmp_path, bootstrap_secret=SECRET)
    TokenStore(settings.home / "tokens").create("root")  # a home from before the marker
    with pytest.raises(ConflictError, match="an admin token exists already"):
        GovernanceChecker(settings).bootstrap_admin(SECRET, "root")


def test_the_file_store_keeps_the_marker(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    assert store.bootstrapped() is None
    token, record = store.bootstrap("root")
    marker = TokenStore(tmp_path).bootstrapped()
    assert marker == {
        "token_id": record.token_id,
        "principal": "root",
        "created_at": record.created_at.isoformat(),
    }
    with pytest.raises(ConflictError):
        TokenStore(tmp_path).bootstrap("root")
    assert TokenStore(tmp_path).verify(token) == "root"
    assert len(TokenStore(tmp_path).list()) == 1
