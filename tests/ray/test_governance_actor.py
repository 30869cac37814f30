from __future__ import annotations

import logging
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from entai.actors.core import ActorService
from entai.actors.governance import (
    ACTOR_NAME,
    AuthCache,
    FailedAuthWindow,
    GovernanceChecker,
    actor_auth_cache,
    start_governance,
)
from entai.shared.core import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from entai.shared.governance import (
    AuditLog,
    Policy,
    Principal,
    hash_secret,
    parse_token,
    service_credential,
)
from entai.shared.settings import EntaiSettings, load_settings, resolve_service_secret

FEATURES = {"email": "identifier", "clicks_7d": "none"}


def _settings(root: Path, policy_file: Path | None = None) -> EntaiSettings:
    return load_settings(
        home=root / "home",
        lake={"root": str(root / "lake")},
        security={"token_file": root / "home" / "admin_token", "policy_file": policy_file},
    )


def _admin_token(settings: EntaiSettings) -> str:
    return settings.security.token_file.read_text().strip()


def _service(settings: EntaiSettings, name: str = "entai-serve") -> str:
    """The credential of the platform service ``name`` (a Serve replica's by default)."""
    return service_credential(resolve_service_secret(settings), name)


def _reason(call: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        call()
    reason: str = info.value.details["reason"]
    return reason


def _audited(checker: GovernanceChecker, admin: str, action: str) -> list[tuple[Any, ...]]:
    """Who did ``action`` to what, with which decision and request id, oldest first."""
    entries = checker.query_audit(admin, action=action)
    return [(e.principal, e.resource, e.decision, e.request_id) for e in entries]


def _revoked(checker: GovernanceChecker, admin: str) -> str:
    """A token of ``app`` that ``admin`` has revoked."""
    token, record = checker.create_token(admin, "app")
    checker.revoke_token(admin, record.token_id)
    return token


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
    gone = _revoked(checker, admin)

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

    denials = _audited(checker, admin, "models:approve")
    assert denials == [("app", "model:churn", "deny", "r-1")]
    failed = checker.query_audit(admin, action="authenticate")
    assert [e.details["reason"] for e in failed] == [
        "missing",
        "malformed",
        "unknown",
        "expired",
        "revoked",
    ]
    assert checker.verify_audit(admin).ok
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
    cache = AuthCache(checker, _service(settings), ttl_s=5.0, clock=lambda: now[0])
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


@pytest.fixture(scope="module")
def actor(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, EntaiSettings, str]]:
    """One governance actor (a home and namespace of its own) for the module's tests
    that call it through Ray; a test may kill it with restart (Ray restarts it)."""
    settings = _settings(tmp_path_factory.mktemp("governance-actor"))
    namespace = f"entai-gov-{uuid.uuid4().hex[:8]}"
    handle = start_governance(settings, namespace)
    ray_cluster.get(handle.__ray_ready__.remote())  # constructed: the token file exists
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
    seq_before = ray.get(handle.verify_audit.remote(admin)).entries

    ray.kill(handle, no_restart=False)

    assert ray.get(handle.authorize.remote(carol, "features:read", "fs")).allowed
    assert _reason(lambda: ray.get(handle.authorize.remote(gone, "predict", "model:m"))) == (
        "revoked"
    )
    snapshot = ray.get(handle.snapshot_for_cache.remote(_service(settings)))
    assert snapshot.policy.version == version
    assert _admin_token(settings) == admin
    entry = ray.get(handle.audit.remote(admin, "models:promote", "model:m", "allow"))
    assert entry.principal == "admin"
    report = ray.get(handle.verify_audit.remote(admin))
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
    cache = actor_auth_cache(ActorService(ACTOR_NAME, handle), _service(settings))
    assert cache.authorize(app, "predict", "model:m").allowed
    with pytest.raises(PermissionDeniedError):
        cache.authorize(app, "models:register", "model:m")
    with pytest.raises(AuthenticationError):
        cache.authorize("entai_000000000000_" + "A" * 43, "predict")


def test_lookup_token_answers_from_the_store_without_auditing(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, _ = checker.create_token(admin, "app")
    gone = _revoked(checker, admin)
    entries = checker.verify_audit(admin).entries

    def lookup(token: str) -> Any:
        token_id, secret = parse_token(token)
        return checker.lookup_token(token_id, hash_secret(secret))

    principal = lookup(app)
    assert principal is not None and principal.name == "app"
    assert lookup(app[:-4] + "AAAA") is None  # wrong secret
    assert lookup(gone) is None  # revoked
    assert lookup("entai_000000000000_" + "A" * 43) is None  # unknown id
    assert checker.verify_audit(admin).entries == entries  # nothing written


def test_failed_authentications_are_audited_one_entry_per_client_window(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    windows = [
        FailedAuthWindow(
            client=client,
            window_start=start,
            window_end=start + timedelta(seconds=60),
            count=count,
            first_seen=start + timedelta(seconds=1),
            last_seen=start + timedelta(seconds=59),
            reasons={"unknown": count - 1, "missing": 1},
        )
        for client, count in (("10.0.0.1", 1999), ("10.0.0.2", 2))
    ]
    app, _ = checker.create_token(admin, "app")
    before = checker.verify_audit(admin).entries
    with pytest.raises(PermissionDeniedError):  # only a service reports failures
        checker.record_auth_failures(app, windows)
    with pytest.raises(AuthenticationError):  # a credential signed with another secret
        checker.record_auth_failures(
            service_credential(b"not-this-platform-secret-0123456789", "entai-serve"), windows
        )
    assert checker.verify_audit(admin).entries == before + 2  # both refusals audited
    assert checker.record_auth_failures(_service(settings), windows) == 2
    assert checker.verify_audit(admin).entries == before + 4
    entries = checker.query_audit(admin, action="authenticate")
    entries = [e for e in entries if e.resource.startswith("client:")]
    assert [(e.resource, e.decision, e.details["count"]) for e in entries] == [
        ("client:10.0.0.1", "deny", 1999),
        ("client:10.0.0.2", "deny", 2),
    ]
    first = entries[0].details
    assert first["reasons"] == {"unknown": 1998, "missing": 1}
    assert first["first_seen"] == "2026-11-01T12:00:01+00:00"
    assert first["last_seen"] == "2026-11-01T12:00:59+00:00"


def _holding(release: Path) -> Callable[[Any], None]:
    """A call that keeps the actor's writer thread busy until ``release`` exists (at
    most 60 s), in place of a fixed sleep that every run would wait out."""

    def hold(checker: Any) -> None:
        deadline = time.monotonic() + 60.0
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    return hold


def test_token_lookups_do_not_wait_behind_the_writer(
    ray_cluster: Any, actor: tuple[Any, EntaiSettings, str], tmp_path: Path
) -> None:
    """A lookup answers while the writer thread is busy (held until the test lets go)."""
    ray = ray_cluster
    handle, settings, _ = actor
    admin = _admin_token(settings)
    app, _ = ray.get(handle.create_token.remote(admin, "app"))
    token_id, secret = parse_token(app)
    release = tmp_path / "release"
    busy = handle.__ray_call__.remote(_holding(release))
    lookup = handle.lookup_token.remote(token_id, hash_secret(secret))
    ready, _ = ray.wait([busy, lookup], num_returns=1, timeout=30)
    assert ready == [lookup], "the lookup queued behind the writer"
    assert ray.get(lookup).name == "app"
    snapshot = handle.snapshot_for_cache.remote(admin)  # the writer's group: after the hold
    assert ray.wait([snapshot], timeout=1.0)[0] == [], "the snapshot did not wait its turn"
    release.touch()
    assert ray.wait([busy, snapshot], num_returns=1, timeout=60)[0] == [busy]
    ray.get(snapshot)


def test_cache_calls_to_a_silent_actor_time_out_as_unavailable(
    ray_cluster: Any, actor: tuple[Any, EntaiSettings, str], tmp_path: Path
) -> None:
    ray = ray_cluster
    handle, settings, _ = actor
    cache = actor_auth_cache(
        ActorService(ACTOR_NAME, handle),
        _service(settings),
        ttl_s=0.5,
        max_stale_s=30.0,
        timeout_s=1.0,
    )
    cache.refresh()
    admin = _admin_token(settings)
    release = tmp_path / "release"
    busy = handle.__ray_call__.remote(_holding(release))
    time.sleep(0.6)  # the snapshot is past its ttl: authorize refreshes, which times out
    decision = cache.authorize(admin, "admin", "*")  # decided from the stale snapshot
    assert decision.allowed
    with pytest.raises(ServiceUnavailableError, match=r"did not answer within 1\.0s"):
        cache.refresh()
    release.touch()
    ray.get(busy)


def test_a_principal_object_or_a_name_is_no_credential_and_the_attempt_is_audited(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    forged: Any = Principal("admin", frozenset({"admin"}))  # anyone on the cluster can build one
    for call in (
        lambda: checker.authorize(forged, "admin", "*"),
        lambda: checker.create_token(forged, "admin"),
        lambda: checker.principal_for(forged, "models:approve", "model:m"),
        lambda: checker.audit(forged, "models:promote", "model:m", "allow"),
    ):
        assert _reason(call) == "not_a_credential"
    assert _reason(lambda: checker.principal_for("admin", "models:approve", "model:m")) == (
        "malformed"
    )
    refusals = [
        e for e in checker.query_audit(admin, action="authenticate") if e.decision == "deny"
    ]
    assert [e.details["reason"] for e in refusals] == ["not_a_credential"] * 4 + ["malformed"]
    assert {e.details.get("given") for e in refusals[:4]} == {"Principal"}
    assert checker.query_audit(admin, action="models:promote") == []


def test_principal_for_names_the_caller_and_audits_only_denials(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    approver, _ = checker.create_token(admin, "approver")
    engineer, _ = checker.create_token(admin, "ml-engineer")
    before = checker.verify_audit(admin).entries
    assert checker.principal_for(approver, "models:approve", "model:m") == "approver"
    assert checker.principal_for(_service(settings, "retrain-policy"), "models:approve", "m") == (
        "retrain-policy"
    )
    assert checker.verify_audit(admin).entries == before  # the caller audits the act itself
    with pytest.raises(PermissionDeniedError):
        checker.principal_for(engineer, "models:approve", "model:m", request_id="r-9")
    denials = _audited(checker, admin, "models:approve")
    assert denials == [("ml-engineer", "model:m", "deny", "r-9")]


def test_only_a_service_records_an_entry_in_another_principals_name(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    engineer, _ = checker.create_token(admin, "ml-engineer")
    own = checker.audit(engineer, "models:note", "model:m", "allow", details={"n": 1})
    assert own.principal == "ml-engineer" and "recorded_by" not in own.details
    with pytest.raises(PermissionDeniedError):  # a user cannot write as someone else
        checker.audit(engineer, "models:promote", "model:m", "allow", principal="approver")
    registry = _service(settings, "entai-model-registry")
    entry = checker.audit(registry, "models:promote", "model:m@champion", "allow", principal="bob")
    assert entry.principal == "bob"
    assert entry.details["recorded_by"] == "entai-model-registry"
    promotions = checker.query_audit(admin, action="models:promote")
    assert [(e.principal, e.decision) for e in promotions] == [("bob", "allow")]
    denied = checker.query_audit(admin, action="audit:write")
    assert [(e.principal, e.decision) for e in denied] == [("ml-engineer", "deny")]


def test_reading_the_audit_log_needs_audit_read(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, _ = checker.create_token(admin, "app")
    approver, _ = checker.create_token(admin, "approver")
    with pytest.raises(PermissionDeniedError):
        checker.verify_audit(app)
    with pytest.raises(PermissionDeniedError):  # services write the log, they do not read it
        checker.verify_audit(_service(settings))
    assert checker.verify_audit(approver).ok
    assert _reason(lambda: checker.flush_audit("Bearer nope")) == "malformed"


def test_a_users_client_reports_only_its_own_principals_usage(
    checker: GovernanceChecker, settings: EntaiSettings
) -> None:
    admin = _admin_token(settings)
    app, _ = checker.create_token(admin, "app")
    usage = {
        ("app", "predict", "model:m", "allow"): 2,
        ("analyst", "features:read", "fs", "allow"): 50,  # not app's to report
    }
    snapshot = checker.snapshot_for_cache(app, usage)
    assert "app" in snapshot.policy.principals
    checker.snapshot_for_cache(_service(settings), {("analyst", "predict", "model:m", "allow"): 3})
    checker.flush_audit()
    counted = {
        (e.principal, e.action): e.details["count"]
        for e in checker.query_audit(admin)
        if e.details.get("aggregated")
    }
    assert counted == {("app", "predict"): 2, ("analyst", "predict"): 3}
    assert _reason(lambda: checker.snapshot_for_cache("", None)) == "missing"
