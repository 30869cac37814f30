from __future__ import annotations

import logging
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entai.actors.core import ActorService
from entai.actors.governance import (
    ACTOR_NAME,
    AuthCache,
    GovernanceChecker,
    actor_auth_cache,
    start_governance,
)
from entai.shared.core import AuthenticationError, NotFoundError, PermissionDeniedError
from entai.shared.governance import AuditLog, Policy
from entai.shared.settings import EntaiSettings, load_settings

FEATURES = {"email": "identifier", "clicks_7d": "none"}


def _settings(root: Path, policy_file: Path | None = None) -> EntaiSettings:
    return load_settings(
        home=root / "home",
        lake={"root": str(root / "lake")},
        security={"token_file": root / "home" / "admin_token", "policy_file": policy_file},
    )


def _admin_token(settings: EntaiSettings) -> str:
    return settings.security.token_file.read_text().strip()


def _reason(call: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        call()
    reason: str = info.value.details["reason"]
    return reason


@pytest.fixture
def settings(tmp_path: Path) -> EntaiSettings:
    return _settings(tmp_path)


@pytest.fixture
def checker(settings: EntaiSettings) -> GovernanceChecker:
    return GovernanceChecker(settings)


def test_first_start_writes_one_admin_token_0600_and_logs_only_its_path(
    settings: EntaiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="entai"):
        first = GovernanceChecker(settings)
    token = _admin_token(settings)
    assert stat.S_IMODE(settings.security.token_file.stat().st_mode) == 0o600
    assert token not in caplog.text
    assert str(settings.security.token_file) in caplog.text
    assert first.authenticate(token).name == "admin"

    again = GovernanceChecker(settings)
    assert _admin_token(settings) == token
    assert len(again.list_tokens(token)) == 1
    assert (settings.home / "policy.yaml").exists()


def test_401_for_missing_bad_expired_and_revoked_tokens_and_403_for_roles(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, _ = checker.create_token(admin, "app")
    short, _ = checker.create_token(admin, "app", ttl_s=1e-6)
    gone, record = checker.create_token(admin, "app")
    checker.revoke_token(admin, record.token_id)

    assert checker.authorize(app, "predict", "model:churn").allowed
    assert _reason(lambda: checker.authorize("", "predict")) == "missing"
    assert _reason(lambda: checker.authorize("Bearer nope", "predict")) == "malformed"
    assert _reason(lambda: checker.authorize(app[:-4] + "AAAA", "predict")) == "unknown"
    assert _reason(lambda: checker.authorize(short, "predict")) == "expired"
    assert _reason(lambda: checker.authorize(gone, "predict")) == "revoked"
    with pytest.raises(PermissionDeniedError) as info:
        checker.authorize(app, "models:approve", "model:churn", request_id="r-1")
    assert info.value.details["action"] == "models:approve"
    with pytest.raises(PermissionDeniedError):
        checker.create_token(app, "admin")
    with pytest.raises(NotFoundError):
        checker.create_token(admin, "nobody")

    denials = checker.query_audit(admin, action="models:approve")
    assert [(e.principal, e.decision, e.request_id) for e in denials] == [("app", "deny", "r-1")]
    failed = checker.query_audit(admin, action="authenticate")
    assert [e.details["reason"] for e in failed] == [
        "missing",
        "malformed",
        "unknown",
        "expired",
        "revoked",
    ]
    assert checker.verify_audit().ok
    written = (Path(settings.lake.root) / "audit" / "audit.jsonl").read_text()
    assert app not in written and admin not in written


def test_pii_features_are_masked_for_analysts_and_plain_for_data_scientists(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    analyst, _ = checker.create_token(admin, "analyst")
    scientist, _ = checker.create_token(admin, "data-scientist")
    app, _ = checker.create_token(admin, "app")
    assert checker.authorize_features(analyst, FEATURES, "fs").masked_features == ("email",)
    assert checker.authorize_features(scientist, FEATURES, "fs").masked_features == ()
    with pytest.raises(PermissionDeniedError):
        checker.authorize_features(app, FEATURES, "fs")


def test_refuse_mode_from_the_policy_file_denies_pii_reads(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    default = Policy.default()
    Policy(
        version=7, roles=default.roles, principals=default.principals, pii_mode="refuse"
    ).to_yaml(policy_file)
    settings = _settings(tmp_path, policy_file)
    checker = GovernanceChecker(settings)
    analyst, _ = checker.create_token(_admin_token(settings), "analyst")
    with pytest.raises(PermissionDeniedError) as info:
        checker.authorize_features(analyst, FEATURES, "fs")
    assert "email" in info.value.message
    assert checker.authorize_features(analyst, {"clicks_7d": "none"}, "fs").allowed


def test_allowed_high_volume_reads_are_aggregated_with_counts(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, _ = checker.create_token(admin, "app")
    for _ in range(3):
        checker.authorize(app, "predict", "model:churn")
    assert checker.flush_audit() == 1
    entries = checker.query_audit(admin, principal="app")
    assert [(e.action, e.decision, e.details["count"]) for e in entries] == [
        ("predict", "allow", 3)
    ]


def test_cache_decides_allowed_reads_locally_and_sees_revocation_within_ttl(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, record = checker.create_token(admin, "app")
    now = [0.0]
    cache = AuthCache(checker, ttl_s=5.0, clock=lambda: now[0])
    assert cache.authorize(app, "predict", "model:m").allowed
    assert cache.authorize(app, "predict", "model:m").allowed
    with pytest.raises(PermissionDeniedError):
        cache.authorize(app, "features:read", "fs")

    checker.revoke_token(admin, record.token_id)
    now[0] = 4.9
    assert cache.authorize(app, "predict", "model:m").allowed  # stale by design, < TTL
    now[0] = 5.0
    assert _reason(lambda: cache.authorize(app, "predict", "model:m")) == "revoked"

    usage = checker.query_audit(admin, principal="app", action="predict")
    assert sum(e.details["count"] for e in usage) == 3
    analyst, _ = checker.create_token(admin, "analyst")
    assert cache.authorize_features(analyst, FEATURES).masked_features == ("email",)


@pytest.fixture
def actor(ray_cluster: Any, tmp_path: Path) -> Iterator[tuple[Any, EntaiSettings, str]]:
    settings = _settings(tmp_path)
    namespace = f"entai-gov-{uuid.uuid4().hex[:8]}"
    handle = start_governance(settings, namespace)
    ray_cluster.get(handle.verify_audit.remote())  # constructed: the token file exists
    try:
        yield handle, settings, namespace
    finally:
        ray_cluster.kill(handle, no_restart=True)


def test_actor_is_named_detached_and_survives_a_kill(
    ray_cluster: Any, actor: tuple[Any, EntaiSettings, str]
) -> None:
    ray = ray_cluster
    handle, settings, namespace = actor
    admin = _admin_token(settings)
    assert ray.get(handle.authorize.remote(admin, "admin", "*")).allowed
    named = ray.get_actor(ACTOR_NAME, namespace=namespace)
    assert named._actor_id == handle._actor_id
    assert start_governance(settings, namespace)._actor_id == handle._actor_id

    version = ray.get(handle.set_principal.remote(admin, "carol", ["analyst"]))
    carol, _ = ray.get(handle.create_token.remote(admin, "carol"))
    gone, gone_record = ray.get(handle.create_token.remote(admin, "app"))
    ray.get(handle.revoke_token.remote(admin, gone_record.token_id))
    with pytest.raises(PermissionDeniedError):
        ray.get(handle.authorize.remote(carol, "predict", "model:m"))
    seq_before = ray.get(handle.verify_audit.remote()).entries

    ray.kill(handle, no_restart=False)

    assert ray.get(handle.authorize.remote(carol, "features:read", "fs")).allowed
    with pytest.raises(AuthenticationError) as info:
        ray.get(handle.authorize.remote(gone, "predict", "model:m"))
    assert info.value.details["reason"] == "revoked"
    snapshot = ray.get(handle.snapshot_for_cache.remote())
    assert snapshot.policy.version == version
    assert _admin_token(settings) == admin
    entry = ray.get(handle.audit.remote("models:promote", "admin", "model:m", "allow"))
    report = ray.get(handle.verify_audit.remote())
    assert report.ok, report.problem
    # After the restart the log went on from where it was: the revoked-token denial,
    # then the promotion (aggregated counts of allowed calls may be flushed between,
    # whenever their window closes).
    log = AuditLog.in_lake(settings.lake.root)
    try:
        since_kill = [e for e in log.query() if e.seq > seq_before]
    finally:
        log.close()
    assert [e.seq for e in since_kill] == list(range(seq_before + 1, report.entries + 1))
    events = [(e.action, e.decision) for e in since_kill if not e.details.get("aggregated")]
    assert events == [("authenticate", "deny"), ("models:promote", "allow")]
    assert entry.seq in {e.seq for e in since_kill}


def test_cache_in_front_of_the_actor(
    ray_cluster: Any, actor: tuple[Any, EntaiSettings, str]
) -> None:
    handle, settings, _ = actor
    admin = _admin_token(settings)
    app, _ = ray_cluster.get(handle.create_token.remote(admin, "app"))
    cache = actor_auth_cache(ActorService(ACTOR_NAME, handle))
    assert cache.authorize(app, "predict", "model:m").allowed
    with pytest.raises(PermissionDeniedError):
        cache.authorize(app, "models:register", "model:m")
    with pytest.raises(AuthenticationError):
        cache.authorize("entai_000000000000_" + "A" * 43, "predict")
