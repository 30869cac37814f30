"""Data commands: ingest files, apply feature definitions, materialize views."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from entai.cli._app import ConfigOption, app, console, join_ray, settings_from, working
from entai.shared.core import NotFoundError

__all__ = ["features_app"]

features_app = typer.Typer(help="Feature definitions and consistency checks.", no_args_is_help=True)
app.add_typer(features_app, name="features")

DefinitionsOption = Annotated[
    str,
    typer.Option(
        "--definitions", "-d", help="Module (pkg.mod) or .py file with the feature definitions."
    ),
]


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Source name; must match the contract's.")],
    path: Annotated[str, typer.Argument(help="File, directory or pyarrow.fs URI to ingest.")],
    contract: Annotated[Path, typer.Option(help="The source's data contract (YAML).", exists=True)],
    fmt: Annotated[str | None, typer.Option("--format", help="csv, parquet or json.")] = None,
    batch_id: Annotated[str | None, typer.Option(help="Batch id (default: generated).")] = None,
    config: ConfigOption = None,
) -> Any:
    """Validate, mask and land a file in the raw zone; bad rows go to quarantine.

    Runs on the platform's Ray, or on a temporary local one when none runs.
    """
    from entai.pipelines.ingest import ingest_file
    from entai.shared.data import DataContract, UndeclaredPii
    from entai.shared.settings import resolve_hmac_key

    settings = settings_from(config)
    key = resolve_hmac_key(settings)
    data_contract = DataContract.from_yaml(contract)
    if data_contract.source != source:
        raise NotFoundError(
            f"contract {contract} is for source {data_contract.source!r}, not {source!r}",
            details={"source": source},
        )
    join_ray(settings, "ingesting")
    with working(f"ingesting {path} (contract {source})"):
        report = ingest_file(
            data_contract,
            path,
            lake_root=settings.lake.root,
            hmac_key=key,
            batch_id=batch_id,
            fmt=fmt,
            progress=False,
            undeclared_pii=UndeclaredPii(settings.security.undeclared_pii),
        )
    if report.skipped_as_duplicate:
        console.print(f"already ingested (batch {report.batch_id}); nothing written")
    else:
        console.print(
            f"batch {report.batch_id}: {report.rows_in:,} rows in = {report.rows_accepted:,} "
            f"accepted + {report.rows_quarantined:,} quarantined"
        )
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False)
    return report


@features_app.command("apply")
def features_apply(definitions: DefinitionsOption, config: ConfigOption = None) -> str:
    """Validate the definitions and record this version in the lake's registry."""
    from entai.shared.data import Lake
    from entai.shared.features import Definitions

    settings = settings_from(config)
    defs = Definitions.from_module(definitions)
    digest = defs.publish(Lake(settings.lake.root))
    console.print(
        f"applied {len(defs.entities)} entities, {len(defs.views)} views, "
        f"{len(defs.services)} services; version {digest[:12]}"
    )
    return digest


@app.command()
def materialize(
    definitions: DefinitionsOption,
    views: Annotated[list[str] | None, typer.Option("--view", help="Only these views.")] = None,
    config: ConfigOption = None,
) -> list[Any]:
    """Compute feature views from the raw lake into the offline tables and online shards."""
    from entai.client import connect
    from entai.pipelines.features import materialize as run
    from entai.shared.data import Lake
    from entai.shared.features import Definitions

    settings = settings_from(config)
    defs = Definitions.from_module(definitions)
    chosen = [defs.view(v) for v in views] if views else list(defs.views.values())
    client = connect(settings=settings)

    with working("materializing feature views", total=len(chosen)) as step:

        def done(r: Any) -> None:
            console.print(
                f"{r.view}: {r.offline_rows:,} offline rows, {r.online_keys:,} online keys, "
                f"watermark {r.watermark}"
            )
            step()

        reports = run(
            chosen, lake=Lake(settings.lake.root), online=client.features, on_view_done=done
        )
    return reports


@features_app.command("check-skew")
def features_check_skew(
    view: Annotated[str, typer.Argument(help="Feature view to check.")],
    definitions: DefinitionsOption,
    sample: Annotated[int, typer.Option(help="Keys to sample.", min=1)] = 100,
    config: ConfigOption = None,
) -> Any:
    """Recompute a sample of online values from raw data with the shared transform."""
    from entai.client import connect
    from entai.pipelines.features import check_skew
    from entai.shared.data import Lake
    from entai.shared.features import Definitions

    settings = settings_from(config)
    feature_view = Definitions.from_module(definitions).view(view)
    client = connect(settings=settings)
    report = check_skew(
        feature_view, lake=Lake(settings.lake.root), online=client.features, sample=sample
    )
    console.print(
        f"{report.view}: {report.sampled} keys sampled, {report.matching} matching, "
        f"{report.mismatched} mismatched, {report.stale} stale, "
        f"{report.missing_online} missing online"
    )
    for example in report.examples:
        console.print(example)
    if not report.ok:
        raise typer.Exit(1)
    return report
