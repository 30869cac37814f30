"""API tokens: random, shown once, stored only as hashes, expirable and revocable.

A token reads ``entai_<token_id>_<secret>``: ``token_id`` is 12 hex characters that
name the record (safe to log and list), ``secret`` is 256 random bits (URL-safe
base64). Only ``sha256(secret)`` is stored. A slow password hash (scrypt, argon2)
protects *low-entropy* secrets against guessing; a 256-bit random secret cannot be
guessed, so a fast hash is as safe and keeps each verification in microseconds,
which matters because every online read is authorized. Hashes are compared in
constant time.

The store is one JSON file (mode 0600) rewritten atomically (temporary file, fsync,
rename) on every change. It has one writer, the GovernanceChecker actor. Subclasses
keep the records elsewhere by overriding :meth:`TokenStore._load`,
:meth:`TokenStore._persist` and the bootstrap marker's two methods
(:class:`~entai.shared.governance._state_postgres.PostgresTokenStore`).

The *first admin token* of a production deployment is minted by
:meth:`TokenStore.bootstrap`, once per store: a marker records it, and a second
bootstrap is refused (:class:`~entai.shared.core.ConflictError`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from entai.shared.core import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)

__all__ = [
    "TOKEN_PREFIX",
    "TokenRecord",
    "TokenStore",
    "already_bootstrapped",
    "hash_secret",
    "parse_token",
    "resolve_token",
]

TOKEN_PREFIX = "entai"  # noqa: S105 - the tokens' visible prefix, not a secret
_TOKEN_RE = re.compile(r"^entai_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_STORE_FILE = "tokens.json"
_BOOTSTRAP_FILE = "bootstrap.json"


@dataclass(frozen=True)
class TokenRecord:
    """What is kept about a token: never the token itself.

    Attributes:
        token_id: Public identifier (in the token's text, in listings and the audit log).
        secret_hash: Hex SHA-256 of the token's secret part.
    """

    token_id: str
    principal: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    secret_hash: str

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO-8601 UTC times)."""
        data = asdict(self)
        for key in ("created_at", "expires_at", "revoked_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        """The inverse of :meth:`to_json`."""

        def when(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(value)

        created = when("created_at")
        if created is None:
            raise ValueError("created_at is missing")
        return cls(
            token_id=data["token_id"],
            principal=data["principal"],
            created_at=created,
            expires_at=when("expires_at"),
            revoked_at=when("revoked_at"),
            secret_hash=data["secret_hash"],
        )


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a token's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    """Split a token into ``(token_id, secret)``.

    Raises:
        AuthenticationError: ``reason=malformed`` when the text is not a token.
    """
    match = _TOKEN_RE.match(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise AuthenticationError(
            "token is malformed (expected 'entai_<id>_<secret>')", details={"reason": "malformed"}
        )
    return match.group(1), match.group(2)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return _now()
    if now.tzinfo is None:
        raise InvalidInputError("now must be timezone-aware", details={"field": "now"})
    return now


class TokenStore:
    """File-backed token records under ``directory`` (``tokens.json``).

    Args:
        directory: Created if missing (mode 0700).
    """

    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)
        self._file = self._dir / _STORE_FILE
        self._records: dict[str, TokenRecord] = {r.token_id: r for r in self._load()}

    @property
    def path(self) -> Path:
        """The JSON file holding the records."""
        return self._file

    @property
    def name(self) -> str:
        """Where the records are kept, for messages (never a secret)."""
        return f"file {self._file}"

    def _load(self) -> list[TokenRecord]:
        if not self._file.exists():
            return []
        try:
            rows = json.loads(self._file.read_text())
            records = [TokenRecord.from_json(row) for row in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"token store {self._file} cannot be read: {exc}",
                details={"path": str(self._file)},
            ) from exc
        return records

    def _persist(self, record: TokenRecord) -> None:
        """Make one new or changed record durable, already in the map (here: rewrite the file)."""
        del record
        self._save()

    def _save(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps([r.to_json() for r in self._records.values()], indent=1)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=f".{_STORE_FILE}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(self._file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(
        self, principal: str, ttl: timedelta | None = None, *, now: datetime | None = None
    ) -> tuple[str, TokenRecord]:
        """Mint a token for ``principal``.

        Returns:
            The plaintext token (shown this once, never stored) and its record.

        Raises:
            InvalidInputError: for an empty principal or a non-positive ``ttl``.
        """
        if not principal.strip():
            raise InvalidInputError("principal is empty", details={"field": "principal"})
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInputError(f"ttl must be positive, got {ttl}", details={"field": "ttl"})
        token, record = self._mint(principal, ttl, now)
        self._store(record)
        return token, record

    def _store(self, record: TokenRecord) -> None:
        """Put one record in place and persist it; the map is unchanged when that fails."""
        before = self._records.get(record.token_id)
        self._records[record.token_id] = record
        try:
            self._persist(record)
        except BaseException:
            if before is None:
                del self._records[record.token_id]
            else:
                self._records[record.token_id] = before
            raise

    def _mint(
        self, principal: str, ttl: timedelta | None, now: datetime | None
    ) -> tuple[str, TokenRecord]:
        """A new token and its record, not yet stored."""
        created = _aware(now)
        token_id = secrets.token_hex(6)
        while token_id in self._records:
            token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id=token_id,
            principal=principal,
            created_at=created,
            expires_at=None if ttl is None else created + ttl,
            revoked_at=None,
            secret_hash=hash_secret(secret),
        )
        return f"{TOKEN_PREFIX}_{token_id}_{secret}", record

    def verify(self, token: str, now: datetime | None = None) -> str:
        """The principal name a valid token belongs to.

        Raises:
            AuthenticationError: ``details["reason"]`` is ``malformed``, ``unknown``
                (also for a wrong secret), ``revoked`` or ``expired``.
        """
        return self.check(token, now).principal

    def check(self, token: str, now: datetime | None = None) -> TokenRecord:
        """Like :meth:`verify`, returning the whole record."""
        token_id, secret = parse_token(token)
        record = self._records.get(token_id)
        presented = hash_secret(secret)
        expected = record.secret_hash if record is not None else "0" * 64
        if not hmac.compare_digest(presented, expected) or record is None:
            raise AuthenticationError(
                "token is unknown", details={"reason": "unknown", "token_id": token_id}
            )
        state = record.state(_aware(now))
        if state != "active":
            raise AuthenticationError(
                f"token {token_id} is {state}", details={"reason": state, "token_id": token_id}
            )
        return record

    def get(self, token_id: str) -> TokenRecord | None:
        """The record named ``token_id``, or None; one dict read, safe beside a writer."""
        return self._records.get(token_id)

    def revoke(self, token_id: str, *, now: datetime | None = None) -> TokenRecord:
        """Revoke a token; revoking twice keeps the first revocation time.

        Raises:
            NotFoundError: for an unknown token id.
        """
        record = self._records.get(token_id)
        if record is None:
            raise NotFoundError(
                f"token {token_id!r} does not exist", details={"token_id": token_id}
            )
        if record.revoked_at is None:
            record = replace(record, revoked_at=_aware(now))
            self._store(record)
        return record

    def list(self) -> list[TokenRecord]:
        """Every record, oldest first (hashes only, never secrets)."""
        return sorted(self._records.values(), key=lambda r: (r.created_at, r.token_id))

    # -- the first admin token --------------------------------------------------------

    def bootstrapped(self) -> dict[str, Any] | None:
        """The bootstrap marker (``token_id``, ``principal``, ``created_at``), or None."""
        path = self._dir / _BOOTSTRAP_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"bootstrap marker {path} cannot be read: {exc}", details={"path": str(path)}
            ) from exc
        return dict(data)

    def bootstrap(self, principal: str, *, now: datetime | None = None) -> tuple[str, TokenRecord]:
        """Mint the store's first admin token for ``principal``; only ever once.

        Returns:
            The plaintext token (shown this once) and its record.

        Raises:
            ConflictError: when the store was bootstrapped before (details name when
                and which token).
        """
        token, record = self._mint(principal, None, now)
        self._claim_bootstrap(record)
        self._store(record)
        return token, record

    def _claim_bootstrap(self, record: TokenRecord) -> None:
        """Write the marker if there is none (atomically); else raise ConflictError."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._dir / _BOOTSTRAP_FILE
        marker = {
            "token_id": record.token_id,
            "principal": record.principal,
            "created_at": record.created_at.isoformat(),
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise already_bootstrapped(self.bootstrapped() or {}, self.name) from None
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(marker))
            out.flush()
            os.fsync(out.fileno())


def already_bootstrapped(marker: dict[str, Any], where: str) -> ConflictError:
    """The error of a second bootstrap, naming the first one."""
    return ConflictError(
        f"the first admin token was already created ({marker.get('token_id', '?')} for "
        f"{marker.get('principal', '?')} at {marker.get('created_at', '?')}, in {where}); "
        "bootstrap runs once: create further tokens with `entai tokens create`",
        details={"reason": "already_bootstrapped", **marker},
    )


def resolve_token(token: str | None, token_file: Path) -> str:
    """The caller's token: ``token``, then ``$ENTAI_TOKEN`` (how a Ray job is given
    one), then the embedded admin token file.

    Raises:
        AuthenticationError: when none of them gives a token.
    """
    if token:
        return token
    if os.environ.get("ENTAI_TOKEN"):
        return os.environ["ENTAI_TOKEN"]
    if token_file.exists():
        return token_file.read_text().strip()
    raise AuthenticationError(
        "no token: pass token=, set ENTAI_TOKEN, or use the embedded admin token file",
        details={"reason": "missing"},
    )
