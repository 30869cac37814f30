"""Governance commands: API tokens and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from entai.cli._app import ConfigOption, app, console, settings_from
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.actors.core import Service
    from entai.actors.governance import GovernanceChecker

__all__ = ["audit_app", "tokens_app"]

tokens_app = typer.Typer(
    help="Bootstrap the first admin token; create, list and revoke API tokens.",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="Verify, query and export the keyed, anchored audit log.", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Caller's token; default $ENTAI_TOKEN, then the embedded admin token file.",
        show_default=False,
    ),
]


def caller_token(settings: EntaiSettings, token: str | None) -> str:
    """The caller's token from the option, $ENTAI_TOKEN or the admin token file."""
    from entai.client import resolve_token

    return resolve_token(settings, token)


def authorized_principal(
    settings: EntaiSettings, token: str | None, permission: str, resource: str
) -> str:
    """The principal behind the caller's token, if it holds ``permission`` on ``resource``.

    Raises:
        AuthenticationError / AuthorizationError: from the governance service.
    """
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    decision = _governance(settings).call(
        GovernanceChecker.authorize, caller_token(settings, token), permission, resource
    )
    return str(decision.principal)


def _governance(settings: EntaiSettings) -> Service[GovernanceChecker]:
    from entai.client import governance_service  # ray: not at CLI start-up

    return governance_service(settings)


@tokens_app.command("create")
def tokens_create(
    principal: Annotated[str, typer.Argument(help="Principal the token acts as.")],
    ttl_hours: Annotated[float | None, typer.Option(help="Expire after this many hours.")] = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> str:
    """Create a token; it is printed once and stored only as a hash."""
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    settings = settings_from(config)
    service = _governance(settings)
    ttl_s = None if ttl_hours is None else ttl_hours * 3600.0
    secret, record = service.call(
        GovernanceChecker.create_token, caller_token(settings, token), principal, ttl_s
    )
    console.print(f"token id {record.token_id} for {record.principal} (shown once):")
    console.print(secret, soft_wrap=True, highlight=False)
    return str(secret)


@tokens_app.command("bootstrap")
def tokens_bootstrap(
    principal: Annotated[
        str, typer.Option(help="The admin principal (holding `admin` in the policy).")
    ] = "admin",
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            help="File holding the bootstrap secret; default security.bootstrap_secret "
            "($ENTAI_SECURITY__BOOTSTRAP_SECRET) or bootstrap_secret_file.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> str:
    """Create the first admin token of a production deployment; only ever once.

    Presents the one-time bootstrap secret to the running governance service, which
    mints the token, records that it did (a second bootstrap is refused) and audits it.
    """
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up
    from entai.shared.core import ConfigError

    settings = settings_from(config)
    if secret_file is not None:
        secret: bytes | None = secret_file.read_bytes().strip()
    else:
        secret = settings.security.resolved_bootstrap_secret()
    if not secret:
        raise ConfigError(
            "no bootstrap secret: set ENTAI_SECURITY__BOOTSTRAP_SECRET (or "
            "security.bootstrap_secret_file), or pass --secret-file",
            details={"field": "security.bootstrap_secret"},
        )
    token, record = _governance(settings).call(
        GovernanceChecker.bootstrap_admin, secret.decode(), principal
    )
    console.print(f"first admin token {record.token_id} for {record.principal} (shown once):")
    console.print(token, soft_wrap=True, highlight=False)
    console.print("store it in your secret manager; the bootstrap secret is now spent")
    return str(token)


@tokens_app.command("list")
def tokens_list(token: TokenOption = None, config: ConfigOption = None) -> list[Any]:
    """List tokens (ids, principals, expiry and revocation; never secrets)."""
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    settings = settings_from(config)
    records = _governance(settings).call(
        GovernanceChecker.list_tokens, caller_token(settings, token)
    )
    table = Table("token id", "principal", "created", "expires", "revoked")
    for r in records:
        table.add_row(
            r.token_id,
            r.principal,
            r.created_at.isoformat(timespec="seconds"),
            r.expires_at.isoformat(timespec="seconds") if r.expires_at else "-",
            r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-",
        )
    console.print(table)
    return list(records)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="Id of the token to revoke.")],
    token: TokenOption = None,
    config: ConfigOption = None,
) -> Any:
    """Revoke a token; callers' caches drop it within their TTL (5 s)."""
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    settings = settings_from(config)
    record = _governance(settings).call(
        GovernanceChecker.revoke_token, caller_token(settings, token), token_id
    )
    console.print(f"revoked {record.token_id} ({record.principal})")
    return record


def _report_verification(report: Any, what: str) -> None:
    """Print a VerifyReport; exit 1 naming the first bad entry when it is not ok."""
    if report.ok:
        anchored = (
            "" if report.anchored_seq is None else f", anchored at entry {report.anchored_seq}"
        )
        console.print(f"{what} verified: {report.entries} entries, chain intact{anchored}")
        if report.legacy_entries:
            console.print(
                f"entries 1..{report.legacy_entries} are legacy unkeyed (plain SHA-256, written "
                "before the chain was keyed): only the keyed entries after them vouch for them"
            )
        return
    where = (
        f"entry {report.first_bad_position}"
        if report.first_bad_position is not None
        else "its anchor"
    )
    console.print(f"[red]{what} is NOT intact[/red] at {where}: {report.problem}")
    raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Verify an exported bundle instead of the live log (needs the audit key).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> Any:
    """Check every entry's MAC and link and the anchor; exit 1 naming the first bad entry
    (the live log needs audit:read)."""
    settings = settings_from(config)
    if bundle is not None:
        from entai.shared.governance import verify_bundle
        from entai.shared.settings import resolve_audit_key

        report = verify_bundle(bundle.read_bytes(), resolve_audit_key(settings, create=False))
        _report_verification(report, f"audit bundle {bundle}")
        return report
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    report = _governance(settings).call(
        GovernanceChecker.verify_audit, caller_token(settings, token)
    )
    _report_verification(report, "audit log")
    return report


@audit_app.command("export")
def audit_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file to write.")],
    token: TokenOption = None,
    config: ConfigOption = None,
) -> Path:
    """Write a verifiable bundle: entries, a signed anchor and a manifest (needs audit:read)."""
    import os

    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    settings = settings_from(config)
    data = _governance(settings).call(GovernanceChecker.export_audit, caller_token(settings, token))
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    console.print(f"wrote the audit bundle {output} ({len(data)} bytes)")
    console.print(f"verify it with: entai audit verify --bundle {output}")
    return output


@audit_app.command("query")
def audit_query(
    principal: Annotated[str | None, typer.Option(help="Only this principal.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    since: Annotated[datetime | None, typer.Option(help="From this time (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Up to this time (UTC).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    token: TokenOption = None,
    config: ConfigOption = None,
) -> list[Any]:
    """Filter the audit log (needs audit:read)."""
    from entai.actors.governance import GovernanceChecker  # ray: not at CLI start-up

    settings = settings_from(config)
    entries = _governance(settings).call(
        GovernanceChecker.query_audit,
        caller_token(settings, token),
        principal=principal,
        action=action,
        since=since.replace(tzinfo=since.tzinfo or UTC) if since else None,
        until=until.replace(tzinfo=until.tzinfo or UTC) if until else None,
        limit=limit,
    )
    table = Table("seq", "time", "principal", "action", "resource", "decision")
    for e in entries:
        table.add_row(str(e.seq), e.ts, e.principal, e.action, e.resource, e.decision)
    console.print(table)
    return list(entries)


@app.command()
def erase(
    entity: Annotated[
        list[str], typer.Option("--entity", help="Subject key, e.g. user_id=42 (repeatable).")
    ],
    reason: Annotated[str, typer.Option(help="Why; recorded in the receipt.")] = (
        "right to erasure"
    ),
    requested_by: Annotated[str, typer.Option(help="Who asked (the data subject's channel).")] = (
        "data-subject"
    ),
    token: TokenOption = None,
    config: ConfigOption = None,
) -> dict[str, Any]:
    """Erase a subject from every store; print the receipt and its id (exit 1 if traces
    remain)."""
    import json

    from entai.client import join_running  # ray: not at CLI start-up
    from entai.pipelines.erasure import erase as run_erase
    from entai.shared.governance import ErasureRequest, parse_entity

    settings = settings_from(config)
    request = ErasureRequest(parse_entity(entity), requested_by=requested_by, reason=reason)
    with console.status("erasing..."):
        # Through the running platform when there is one: its governance actor is the
        # audit log's one writer and its shards hold the subject's online rows.
        join_running(settings)
        receipt = run_erase(settings, request, caller=caller_token(settings, token))
    out: dict[str, Any] = receipt.to_dict()
    console.print_json(json.dumps(out, default=str))
    console.print(f"erasure {receipt.erasure_id}")
    if not receipt.complete:
        console.print("[red]traces remain[/red]; see `remaining` in the receipt")
        raise typer.Exit(1)
    return out
