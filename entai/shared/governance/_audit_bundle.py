"""A verifiable export of the audit log: entries, their anchor and a signed manifest.

The bundle is a zip archive with three members:

- ``entries.jsonl``: the log's lines, from entry 1 to the anchored entry;
- ``anchor.json``: an anchor of the last entry, MACed under the audit key;
- ``manifest.json``: format, entry count, last ``seq`` and hash, SHA-256 and size of
  ``entries.jsonl``, when, by whom and from where it was exported, MACed under a key
  derived from the audit key for bundles only.

:func:`verify_bundle` needs the audit key: it checks the manifest's MAC, that the
entries are the bytes the manifest names, every entry's MAC and link, and that the
anchor covers exactly the last entry.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
import zlib
from datetime import UTC, datetime
from typing import Any

from entai.shared.core import AuditIntegrityError
from entai.shared.governance._audit_anchor import parse_anchor
from entai.shared.governance._audit_chain import (
    Anchor,
    VerifyReport,
    canonical_json,
    check_chain,
    derive_key,
)

__all__ = ["BUNDLE_FORMAT", "build_bundle", "verify_bundle"]

BUNDLE_FORMAT = "entai-audit-bundle/1"
_ENTRIES, _ANCHOR, _MANIFEST = "entries.jsonl", "anchor.json", "manifest.json"


def _manifest_mac(body: dict[str, Any], key: bytes) -> str:
    return hmac.new(
        derive_key(key, "bundle"), canonical_json(body).encode(), hashlib.sha256
    ).hexdigest()


def build_bundle(
    entries: bytes, anchor: Anchor, key: bytes, *, source: str, exported_by: str
) -> bytes:
    """The bundle's bytes.

    Args:
        entries: The log's lines up to and including the anchored entry.
        anchor: An anchor of the last entry in ``entries``.
        key: The audit key.
        source: Where the log was read (recorded in the manifest).
        exported_by: The principal exporting it.
    """
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "entries": entries.count(b"\n"),
        "last_seq": anchor.seq,
        "last_hash": anchor.hash,
        "keyed_from": anchor.keyed_from,
        "entries_sha256": hashlib.sha256(entries).hexdigest(),
        "entries_bytes": len(entries),
        "exported_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "exported_by": exported_by,
        "source": source,
    }
    manifest["mac"] = _manifest_mac(manifest, key)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_ENTRIES, entries)
        archive.writestr(_ANCHOR, anchor.to_json())
        archive.writestr(_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return out.getvalue()


def _bad(problem: str, entries: int = 0, position: int | None = None) -> VerifyReport:
    return VerifyReport(False, entries, position, problem)


def _read(data: bytes) -> tuple[bytes, str, Any] | str:
    """The members (entries, anchor text, manifest), or what is wrong with the archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            missing = sorted({_ENTRIES, _ANCHOR, _MANIFEST} - set(archive.namelist()))
            if missing:
                return f"the bundle has no {', '.join(missing)}"
            return (
                archive.read(_ENTRIES),
                archive.read(_ANCHOR).decode("utf-8"),
                json.loads(archive.read(_MANIFEST)),
            )
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError) as exc:  # a changed byte
        return f"the bundle is not a readable zip archive of an audit export: {exc}"


def _manifest_problem(manifest: Any, entries: bytes, key: bytes) -> str:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("mac"), str):
        return "the manifest is malformed (no mac)"
    body = {k: v for k, v in manifest.items() if k != "mac"}
    if not hmac.compare_digest(_manifest_mac(body, key), manifest["mac"]):
        return "the manifest is not signed with the audit key (forged, or another key)"
    if body.get("format") != BUNDLE_FORMAT:
        return f"unknown bundle format {body.get('format')!r}"
    if hashlib.sha256(entries).hexdigest() != body.get("entries_sha256"):
        return "entries.jsonl is not the file the manifest names (changed after export)"
    return ""


def verify_bundle(data: bytes, key: bytes) -> VerifyReport:
    """Check a bundle made by :func:`build_bundle`; report the first problem.

    The report's ``first_bad_position`` is the first bad entry (its line = its ``seq``);
    a problem with the archive, its manifest or its anchor has no position.
    """
    members = _read(data)
    if isinstance(members, str):
        return _bad(members)
    entries, anchor_text, manifest = members
    problem = _manifest_problem(manifest, entries, key)
    if problem:
        return _bad(problem)
    try:
        anchor: Anchor | None = parse_anchor(anchor_text, "the bundle")
    except AuditIntegrityError as exc:
        anchor, problem = None, exc.message
    report = check_chain(
        io.BytesIO(entries), key, anchor, anchor_problem=problem, where="the bundle"
    )
    stated = (manifest.get("last_seq"), manifest.get("entries"))
    if report.ok and (report.anchored_seq, report.entries) != stated:
        return _bad(
            f"the bundle holds {report.entries} entries anchored at entry "
            f"{report.anchored_seq}; its manifest says {stated[1]} ending at entry {stated[0]}",
            report.entries,
        )
    return report
