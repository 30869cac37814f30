"""``entai score``: a registered model over a dataset, on Ray Data, resumable."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from entai.cli._app import ConfigOption, app, console, join_ray, settings_from, working

__all__ = ["score"]


@app.command()
def score(
    model: Annotated[str, typer.Argument(help="NAME (its champion), NAME@ALIAS or NAME/VERSION.")],
    input_uri: Annotated[
        str,
        typer.Option(
            "--input", "-i", help="Parquet or CSV file or directory, a URI, or a lake dataset id."
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output directory (default: the lake's predictions/batch/ zone).",
        ),
    ] = None,
    part_rows: Annotated[
        int, typer.Option(help="Rows per part of a Parquet input (the unit of resumption).", min=1)
    ] = 100_000,
    actors: Annotated[
        int | None, typer.Option(help="Scoring actors (default: the free CPUs).", min=1)
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard an earlier attempt's parts in --output.")
    ] = False,
    config: ConfigOption = None,
) -> Any:
    """Score a dataset with a registered model; a rerun finishes an interrupted one.

    Runs on the platform's scoring service (started by `entai up`; its workers stay
    warm from one run to the next), or on a pool of scoring actors on a temporary
    local Ray when no platform runs.
    """
    from entai.client import platform_address, registry_service
    from entai.pipelines.scoring import plan_scoring, run_scoring, scoring_service

    settings = settings_from(config)
    plan = plan_scoring(
        settings,
        registry_service(settings),
        model,
        input_uri,
        output,
        part_rows=part_rows,
        restart=restart,
    )
    job = plan.job
    name = f"{job.model.name} v{job.model.version}"
    if plan.resumption.manifest.get("status") == "complete":
        report = run_scoring(plan)
        console.print(
            f"already scored by {name} (run {report.run_id}): {report.rows:,} rows in "
            f"{report.output}; nothing to do (--restart scores again)",
            markup=False,
        )
        return report
    service = None
    if plan.todo:
        join_ray(settings, "scoring")
        if platform_address(settings) is not None:
            service = scoring_service(settings)  # the platform's, warm after its first run
    if plan.done:
        console.print(
            f"resuming run {job.run_id}: {plan.done} of {len(job.parts)} parts already scored"
        )
    with working(f"scoring {input_uri} with {name}", total=len(plan.todo)) as step:
        report = run_scoring(
            plan, actors=actors, on_part_done=lambda _i, _rows: step(), service=service
        )
    console.print(
        f"{report.rows:,} rows scored by {name} -> {report.output} (run {report.run_id}; "
        f"{report.parts_scored} of {report.parts} parts this time, {report.seconds:.1f} s)",
        markup=False,
    )
    return report
