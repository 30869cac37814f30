"""CallerCheck: what a data-plane actor accepts as its caller's credential.

Tokens are checked against a real GovernanceChecker over a test home (in process,
behind an AuthCache, as an actor's check does through the running service).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from credentials import SERVICE, callers
from governed import Governed

from entai.actors.features import FeatureShard, OnlineFeatureClient
from entai.actors.governance import AuthCache, CallerCheck
from entai.shared.core import AuthenticationError, InvalidInputError, PermissionDeniedError
from entai.shared.features import FeatureRow, MemoryOnlineStore
from entai.shared.governance import Permission, service_credential
from entai.shared.settings import load_settings, resolve_service_secret

WRITE = Permission.FEATURES_WRITE


class Counting:
    """Counts the calls that reach the governance checker."""

    def __init__(self, governed: Governed) -> None:
        self.inner = governed.checker
        self.lookups = 0
        self.snapshots = 0

    def lookup_token(self, token_id: str, secret_hash: str) -> object:
        self.lookups += 1
        return self.inner.lookup_token(token_id, secret_hash)

    def snapshot_for_cache(self, credential: str, usage: object) -> object:
        self.snapshots += 1
        return self.inner.snapshot_for_cache(credential, None)


def _check(tmp_path: Path) -> tuple[Governed, Counting, CallerCheck, list[float]]:
    settings = load_settings(home=tmp_path).resolved()
    governed = Governed(settings)
    backend = Counting(governed)
    now = [0.0]
    secret = resolve_service_secret(settings)
    cache = AuthCache(
        backend,  # type: ignore[arg-type]
        service_credential(secret, "feature-shard"),
        ttl_s=5.0,
        clock=lambda: now[0],
    )
    return governed, backend, CallerCheck(secret, cache, ttl_s=5.0, clock=lambda: now[0]), now


def test_service_credentials_pass_forged_and_missing_ones_do_not(tmp_path: Path) -> None:
    governed, backend, check, _ = _check(tmp_path)
    secret = resolve_service_secret(governed.settings)
    assert check.require(service_credential(secret, "erasure"), WRITE, "view:v") == "erasure"
    forged = service_credential(b"another platform's secret......", "erasure")
    for bad in (forged, "entai-svc.erasure.00", "", None, 7, "ml-engineer"):
        with pytest.raises(AuthenticationError):
            check.require(bad, WRITE, "view:v")
    assert backend.lookups == 0  # none of those is a token worth asking about


def test_a_token_needs_the_permission_on_the_resource(tmp_path: Path) -> None:
    governed, _, check, _ = _check(tmp_path)
    assert check.require(governed.token("ml-engineer"), WRITE, "view:v") == "ml-engineer"
    with pytest.raises(PermissionDeniedError, match="features:write"):
        check.require(governed.token("app"), WRITE, "view:v")
    with pytest.raises(PermissionDeniedError, match="governance:erase"):
        check.require(governed.token("ml-engineer"), Permission.GOVERNANCE_ERASE, "features")
    assert check.require(governed.admin, Permission.ADMIN, "features") == "admin"


def test_a_token_costs_no_call_within_the_ttl_and_a_revoked_one_stops_after(
    tmp_path: Path,
) -> None:
    governed, backend, check, now = _check(tmp_path)
    token = governed.token("ml-engineer")  # minted before the first snapshot: in it
    for _ in range(50):
        check.require(token, WRITE, "view:v")
    assert backend.snapshots == 1 and backend.lookups == 0
    late = governed.token("data-scientist")  # minted since: looked up once, then known
    for _ in range(50):
        check.require(late, WRITE, "view:v")
    assert backend.snapshots == 1 and backend.lookups == 1
    token_id = token.split("_")[1]
    governed.checker.revoke_token(governed.admin, token_id)
    now[0] = 4.0
    check.require(token, WRITE, "view:v")  # still within the TTL
    now[0] = 10.0
    with pytest.raises(AuthenticationError, match="unknown, expired or revoked"):
        check.require(token, WRITE, "view:v")


def test_without_governance_only_service_credentials_pass(tmp_path: Path) -> None:
    check = callers()
    assert check.require(SERVICE, WRITE, "view:v") == "tests"
    governed = Governed(load_settings(home=tmp_path).resolved())
    with pytest.raises(AuthenticationError):
        check.require(governed.admin, WRITE, "view:v")


def test_a_refused_shard_write_writes_nothing(tmp_path: Path) -> None:
    governed, _, check, _ = _check(tmp_path)
    shard = FeatureShard("s0", MemoryOnlineStore(), callers=check)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [FeatureRow("v", "k", {"x": 1}, t, t)]
    with pytest.raises(PermissionDeniedError):
        shard.write(rows, credential=governed.token("app"))
    with pytest.raises(AuthenticationError):
        shard.write(rows, credential="")
    assert shard.scan(credential=governed.admin) == []
    assert shard.write(rows, credential=governed.token("ml-engineer")) == 1
    with pytest.raises(PermissionDeniedError):
        shard.scan(credential=governed.token("ml-engineer"))  # a dump needs governance:erase
    assert len(shard.scan(credential=governed.admin)) == 1


def test_a_client_with_shards_needs_a_credential() -> None:
    with pytest.raises(InvalidInputError, match="credential"):
        OnlineFeatureClient([object()])  # refused before any shard is asked anything
    assert OnlineFeatureClient(None, direct_store=MemoryOnlineStore()).shard_ids == []
