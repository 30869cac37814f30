from __future__ import annotations

import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from entai.shared.core import AuthenticationError, InvalidInputError, NotFoundError
from entai.shared.governance import TokenStore, hash_secret, parse_token

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _reason(store: TokenStore, token: str, now: datetime = T0) -> str:
    with pytest.raises(AuthenticationError) as info:
        store.verify(token, now)
    assert not token or token not in info.value.message
    reason: str = info.value.details["reason"]
    return reason


def test_created_token_verifies_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token, record = store.create("alice", now=T0)
    assert re.fullmatch(r"entai_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert store.verify(token, T0) == "alice"
    token_id, secret = parse_token(token)
    assert record.token_id == token_id
    assert record.secret_hash == hash_secret(secret)
    on_disk = store.path.read_text()
    assert secret not in on_disk
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_wrong_secret_and_malformed_tokens_are_rejected(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token, _ = store.create("alice", now=T0)
    token_id, secret = parse_token(token)
    other = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert _reason(store, f"entai_{token_id}_{other}") == "unknown"
    assert _reason(store, f"entai_{'0' * 12}_{secret}") == "unknown"
    for bad in ("", "Bearer x", token + "x", token.replace("entai_", "other_"), token[:-1]):
        assert _reason(store, bad) == "malformed"


def test_expiry_is_exclusive_at_the_deadline(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token, record = store.create("bob", ttl=timedelta(minutes=5), now=T0)
    assert record.expires_at == T0 + timedelta(minutes=5)
    assert store.verify(token, T0 + timedelta(minutes=4, seconds=59)) == "bob"
    assert _reason(store, token, T0 + timedelta(minutes=5)) == "expired"


def test_revocation_persists_and_keeps_the_first_time(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token, record = store.create("carol", now=T0)
    keep, _ = store.create("carol", now=T0)
    revoked = store.revoke(record.token_id, now=T0 + timedelta(hours=1))
    again = store.revoke(record.token_id, now=T0 + timedelta(hours=2))
    assert revoked.revoked_at == again.revoked_at == T0 + timedelta(hours=1)
    assert _reason(store, token) == "revoked"

    reopened = TokenStore(tmp_path)
    assert _reason(reopened, token) == "revoked"
    assert reopened.verify(keep, T0) == "carol"
    assert [r.token_id for r in reopened.list()] == [r.token_id for r in store.list()]


def test_list_has_every_record_and_no_secret(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    tokens = [store.create(name, now=T0 + timedelta(seconds=i))[0] for i, name in enumerate("xyz")]
    records = store.list()
    assert [r.principal for r in records] == ["x", "y", "z"]
    dumped = repr(records)
    assert not any(parse_token(t)[1] in dumped for t in tokens)


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    with pytest.raises(InvalidInputError) as info:
        store.create("alice", ttl=timedelta(0))
    assert info.value.details["field"] == "ttl"
    with pytest.raises(InvalidInputError):
        store.create("  ")
    with pytest.raises(NotFoundError):
        store.revoke("deadbeef0000")
    token, _ = store.create("alice")
    with pytest.raises(InvalidInputError) as naive:
        store.verify(token, datetime(2026, 1, 1))
    assert naive.value.details["field"] == "now"
