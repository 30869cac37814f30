"""Where the audit log's signed checkpoints (anchors) are kept: a second store.

An :class:`~entai.shared.governance._audit_chain.Anchor` records the last anchored
entry's ``seq``, hash and the log's size there, MACed with a key derived from the audit
key. It lives outside the lake, so whoever can rewrite the lake can neither move it
nor forge a new one: deleting anchored entries, or the tail up to the anchored entry,
is found by ``verify``.

:class:`AnchorStore` is the interface; :class:`FileAnchorStore` keeps one JSON file
(the embedded default, under the home), :class:`MemoryAnchorStore` is the in-memory
double, and :class:`~entai.shared.governance._audit_anchor_postgres.PostgresAnchorStore`
keeps one row per log in PostgreSQL.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from entai.shared.core import AuditIntegrityError
from entai.shared.governance._audit_chain import Anchor, anchor_mac, derive_key

__all__ = ["AnchorStore", "FileAnchorStore", "MemoryAnchorStore", "parse_anchor", "sign_anchor"]


@runtime_checkable
class AnchorStore(Protocol):
    """A store of one log's latest anchor."""

    @property
    def name(self) -> str:
        """Where the anchor is kept, for messages (never a secret)."""
        ...

    def read(self) -> Anchor | None:
        """The latest anchor, None when there is none.

        Raises:
            AuditIntegrityError: when the stored anchor is malformed.
            ServiceUnavailableError: when the store cannot be reached.
        """
        ...

    def write(self, anchor: Anchor) -> None:
        """Replace the latest anchor (the writer only moves it forward).

        Raises:
            ServiceUnavailableError: when the store cannot be reached.
        """
        ...


def sign_anchor(
    key: bytes, *, seq: int, digest: str, keyed_from: int, size: int, ts: datetime | None = None
) -> Anchor:
    """An anchor for entry ``seq`` whose hash is ``digest``, MACed under the audit key.

    Args:
        key: The audit key.
        seq: The anchored entry.
        digest: Its hash.
        keyed_from: ``seq`` of the log's first keyed entry.
        size: Bytes of the log up to and including the anchored line.
        ts: When (default: now).
    """
    moment = (ts or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    body = {"seq": seq, "hash": digest, "keyed_from": keyed_from, "size": size, "ts": moment}
    mac = anchor_mac(body, derive_key(key, "anchor"))
    return Anchor(seq=seq, hash=digest, keyed_from=keyed_from, size=size, ts=moment, mac=mac)


def parse_anchor(text: str, where: str) -> Anchor:
    """An anchor from its JSON.

    Raises:
        AuditIntegrityError: when it does not parse.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Anchor.from_mapping(data)
    except ValueError as exc:
        raise AuditIntegrityError(
            f"the anchor in {where} is malformed: {exc}", details={"anchor_store": where}
        ) from exc


class MemoryAnchorStore:
    """Keeps the anchor in memory (tests, and a log nobody needs to vouch for later)."""

    name = "memory"

    def __init__(self, anchor: Anchor | None = None) -> None:
        self.anchor = anchor
        self.writes = 0

    def __repr__(self) -> str:
        return f"MemoryAnchorStore(seq={None if self.anchor is None else self.anchor.seq})"

    def read(self) -> Anchor | None:
        return self.anchor

    def write(self, anchor: Anchor) -> None:
        self.anchor = anchor
        self.writes += 1


class FileAnchorStore:
    """One JSON file, replaced atomically (``fsync`` of the file and its directory).

    Args:
        path: The anchor file; keep it outside the lake (the embedded default is
            ``<home>/audit_anchor.json``). Created 0600 with its directory.
        fsync: Make every write durable before returning (keep True outside tests).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"FileAnchorStore(path={str(self.path)!r})"

    @property
    def name(self) -> str:
        return f"file {self.path}"

    def read(self) -> Anchor | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        return parse_anchor(text, self.name)

    def write(self, anchor: Anchor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(anchor.to_json())
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._fsync:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
