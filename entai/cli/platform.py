"""Platform lifecycle commands: up, status, down, demo, deploy.

``up`` starts a head (and the MLflow UI) that outlive it; the other commands join that
platform through the settings' home, and ``down`` stops it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from entai.cli._app import ConfigOption, app, console
from entai.cli._app import settings_from as _settings

if TYPE_CHECKING:
    from entai.deployments.serve_status import DeploymentReplicas


MlflowPortOption = Annotated[
    int,
    typer.Option(
        "--mlflow-port", help="The MLflow UI's port (a free one if taken); 0: no UI.", min=0
    ),
]
_DEFAULT_UI_PORT = 5000


@app.command()
def up(
    config: ConfigOption = None,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead.")] = None,
    gcs_port: Annotated[int, typer.Option(help="GCS port of a new local head.")] = 6390,
    mlflow_port: Annotated[
        int | None,
        typer.Option(
            "--mlflow-port",
            help="The MLflow UI's port (a free one if taken); 0: no UI. Default: 5000 with "
            "a local head, no UI when joining a cluster (--address).",
            min=0,
            show_default=False,
        ),
    ] = None,
) -> dict[str, Any]:
    """Start (or join) a Ray head on 127.0.0.1, the platform services and the MLflow UI.

    They keep running after this command, until `entai down`.
    """
    from entai.client import start_platform

    settings = _settings(config)
    if mlflow_port is None:
        mlflow_port = 0 if address else _DEFAULT_UI_PORT
    with console.status("starting the Ray head, the platform services and the MLflow UI..."):
        result = start_platform(
            settings, address=address, gcs_port=gcs_port, mlflow_port=mlflow_port or None
        )
    already = address is None and not result["started"]
    state = "entai is already up" if already else "[green]entai is up[/green]"
    console.print(f"{state} at {result['address']} ({len(result['services'])} services)")
    console.print(f"  dashboard: {result['dashboard_url']}")
    if result["mlflow_url"]:
        note = f" ({result['mlflow_note']})" if result["mlflow_note"] else ""
        console.print(f"  MLflow UI: {result['mlflow_url']}{note}")
    for name in result["services"]:
        console.print(f"  service: {name}")
    console.print(f"  logs: {settings.home / 'logs'}; stop everything with `entai down`")
    return result


@app.command()
def status(config: ConfigOption = None) -> dict[str, Any]:
    """Show each platform service's health and each Serve deployment's replicas.

    Exits 1 when no platform runs under the settings' home.
    """
    from entai.client import platform_status

    settings = _settings(config)
    result = platform_status(settings)
    if not result["running"]:
        console.print(f"entai is not running under {settings.home}: `entai up` starts it.")
        raise typer.Exit(1)
    table = Table("kind", "name", "state")
    for row in result["services"]:
        table.add_row(row["kind"], row["name"], row["state"])
    console.print(f"cluster: {result['address']}  dashboard: {result['dashboard_url']}")
    if result.get("mlflow_url"):
        console.print(f"MLflow UI: {result['mlflow_url']}")
    console.print(table)
    if result["streams"]:
        streams = Table("stream consumer", "running", "backlog (lag)", "landed", "dead letters")
        for w in result["streams"]:
            counts = w.get("counts", {})
            streams.add_row(
                str(w.get("consumer")),
                "yes" if w.get("running") else "no",
                str(w.get("backlog", "?")),
                str(counts.get("landed", 0)),
                str(counts.get("dead_letter", 0)),
            )
        console.print(streams)
    console.print(serve_table(result["serve"]))
    return result


def serve_table(deployments: Sequence[DeploymentReplicas]) -> Table | str:
    """Replicas of every Serve deployment: running/target, status, autoscaling bounds."""
    if not deployments:
        return "serve: no application running"
    table = Table("application", "deployment", "status", "replicas (running/target)", "autoscaling")
    for d in deployments:
        table.add_row(
            f"{d.application} ({d.application_status})",
            d.deployment,
            d.status,
            f"{d.running}/{d.target}",
            d.autoscaling,
        )
    return table


@app.command()
def down(config: ConfigOption = None) -> bool:
    """Stop what `entai up` started, and nothing else."""
    from entai.client import stop_platform

    settings = _settings(config)
    with console.status("stopping entai..."):
        stopped = stop_platform(settings)
    if not stopped:
        console.print(f"nothing to stop: no platform started by `entai up` under {settings.home}.")
        return False
    for line in stopped:
        console.print(f"{line}.", markup=False, highlight=False)
    console.print("entai stopped.")
    return True


@app.command()
def demo(
    config: ConfigOption = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Leave the platform and the demo's app up afterwards (`entai down` stops it).",
        ),
    ] = False,
    users: Annotated[int, typer.Option(help="Synthetic users.", min=100)] = 2_000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary here.")
    ] = None,
    mlflow_port: MlflowPortOption = _DEFAULT_UI_PORT,
) -> dict[str, Any]:
    """Run the whole platform end to end on synthetic e-commerce data.

    It joins the platform `entai up` started, or starts one the same way.
    """
    from entai.demo.flow import run_demo

    settings = _settings(config)
    summary = run_demo(
        settings,
        users=users,
        keep_running=keep_running,
        console=console,
        mlflow_port=mlflow_port or None,
    )
    if json_out is not None:
        json_out.write_text(json.dumps(summary, indent=2, default=str))
    return summary


@app.command()
def deploy(
    serve_config: Annotated[Path, typer.Option(help="Serve config file.", exists=True)] = Path(
        "cluster/serve_config.yaml"
    ),
    config: ConfigOption = None,
) -> dict[str, str]:
    """Deploy the Serve application (a Serve config file) on the running platform."""
    from entai.client import deploy_serve_config

    settings = _settings(config)
    with console.status(f"deploying {serve_config}..."):
        states = deploy_serve_config(settings, serve_config)
    for name, state in states.items():
        console.print(f"{name}: {state}")
    return states
