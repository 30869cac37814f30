"""Training and registry commands: train, tune, models list|show|promote|rollback|card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from entai.cli._app import ConfigOption, app, console, join_ray, settings_from, working
from entai.cli.governance import TokenOption, caller_token
from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from entai.actors.core import Service
    from entai.actors.models import ModelRegistry

__all__ = ["models_app"]

models_app = typer.Typer(help="The model registry: versions, aliases, cards.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ConfigFile = Annotated[
    Path, typer.Option("--config", "-f", help="Training/tuning YAML file.", exists=True)
]
SettingsOption = Annotated[
    Path | None, typer.Option("--settings", "-s", help="Settings YAML file.", exists=True)
]


def _run_on_ray(settings_file: Path | None, what: str, job: Callable[[EntaiSettings], Any]) -> Any:
    """Join the platform's Ray (or a temporary one), run ``job`` showing progress, print
    and return its result."""
    settings = settings_from(settings_file)
    join_ray(settings, what)
    with working(f"{what}..."):
        result = job(settings)
    console.print(result)
    return result


@app.command()
def train(
    config_file: ConfigFile, settings_file: SettingsOption = None, token: TokenOption = None
) -> dict[str, Any]:
    """Build the training set, train on Ray Train, evaluate, log to MLflow, register.

    The registrant is the token's principal (it needs models:register).
    """
    from entai.pipelines.training import TrainConfig, run_training

    config = TrainConfig.from_yaml(config_file)
    result: dict[str, Any] = _run_on_ray(
        settings_file,
        "training",
        lambda settings: run_training(settings, config, token=_token_for(settings, config, token)),
    )
    return result


@app.command()
def tune(
    config_file: ConfigFile, settings_file: SettingsOption = None, token: TokenOption = None
) -> dict[str, Any]:
    """Search XGBoost parameters with Ray Tune (ASHA), retrain the best, register it.

    The registrant is the token's principal (it needs models:register).
    """
    from entai.pipelines.training import TuneConfig, run_tuning

    config = TuneConfig.from_yaml(config_file)
    result: dict[str, Any] = _run_on_ray(
        settings_file,
        "tuning",
        lambda settings: run_tuning(settings, config, token=_token_for(settings, config, token)),
    )
    return result


def _token_for(settings: EntaiSettings, config: Any, token: str | None) -> str | None:
    """The caller's token when the run registers a version (refused before training
    when there is none), else None."""
    return caller_token(settings, token) if config.register_model else None


def _registry(settings: EntaiSettings) -> Service[ModelRegistry]:
    from entai.client import registry_service  # ray: not at CLI start-up

    return registry_service(settings)


@models_app.command("list")
def models_list(config: ConfigOption = None) -> list[dict[str, Any]]:
    """Registered models with their aliases."""
    from entai.actors.models import ModelRegistry  # ray: not at CLI start-up

    models = _registry(settings_from(config)).call(ModelRegistry.list_models)
    table = Table("model", "latest version", "aliases")
    for m in models:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(m["aliases"].items()))
        table.add_row(m["name"], str(m["latest_version"]), aliases or "-")
    console.print(table)
    return models


@models_app.command("show")
def models_show(name: str, config: ConfigOption = None) -> dict[str, Any]:
    """Versions of a model with lineage, and its alias history."""
    from entai.actors.models import ModelRegistry  # ray: not at CLI start-up

    registry = _registry(settings_from(config))
    versions = registry.call(ModelRegistry.versions, name)
    history = registry.call(ModelRegistry.alias_history, name)
    table = Table("version", "aliases", "registrant", "run")
    for v in versions:
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            v.tags.get("entai.registrant", "?"),
            v.run_id or "-",
        )
    console.print(table)
    for move in history:
        console.print(
            f"{move.get('at', '?')}: {move.get('alias')} -> v{move.get('version')} "
            f"by {move.get('by')} ({move.get('reason', '')})"
        )
    return {"versions": versions, "history": history}


@models_app.command("promote")
def models_promote(
    name: str,
    version: int,
    alias: Annotated[str, typer.Option(help="champion, challenger or shadow.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")] = "",
    token: TokenOption = None,
    config: ConfigOption = None,
) -> Any:
    """Move an alias to a version through the promotion gates (needs models:approve)."""
    settings = settings_from(config)
    secret = caller_token(settings, token)
    from entai.actors.models import ModelRegistry  # ray: not at CLI start-up

    registry = _registry(settings)
    info = registry.call(ModelRegistry.promote, name, version, alias, token=secret, reason=reason)
    approver = registry.call(ModelRegistry.alias_history, name)[-1]["by"]
    console.print(f"{name}: {alias} -> v{info.version} (approved by {approver})")
    return info


@models_app.command("rollback")
def models_rollback(
    name: str,
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "champion",
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")] = "",
    token: TokenOption = None,
    config: ConfigOption = None,
) -> Any:
    """Move an alias back to its previous holder (needs models:approve)."""
    settings = settings_from(config)
    secret = caller_token(settings, token)
    from entai.actors.models import ModelRegistry  # ray: not at CLI start-up

    info = _registry(settings).call(
        ModelRegistry.rollback, name, alias, token=secret, reason=reason
    )
    console.print(f"{name}: {alias} rolled back to v{info.version}")
    return info


CardFormat = Annotated[
    str, typer.Option("--format", help="md (Markdown) or html (one self-contained page).")
]
CardOutput = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the card here instead of printing it.")
]


@models_app.command("card")
def models_card(
    model: Annotated[str, typer.Argument(help="NAME, or NAME@ALIAS (e.g. propensity@champion).")],
    version: Annotated[
        int | None, typer.Argument(help="The version (default: the alias's, else the latest).")
    ] = None,
    fmt: CardFormat = "md",
    output: CardOutput = None,
    config: ConfigOption = None,
) -> str:
    """Render a version's model card with its lineage and approvals (Markdown or HTML)."""
    from entai.actors.models import ModelRegistry  # ray: not at CLI start-up

    if fmt not in ("md", "html"):
        raise InvalidInputError(
            f"--format must be md or html, not {fmt!r}", details={"field": "format"}
        )
    name, _, alias = model.partition("@")
    registry = _registry(settings_from(config))
    if alias and version is not None:
        raise InvalidInputError(
            "give NAME@ALIAS or NAME VERSION, not both", details={"field": "version"}
        )
    if alias:
        version = registry.call(ModelRegistry.resolve, name, alias).version
    elif version is None:
        versions = registry.call(ModelRegistry.versions, name)
        if not versions:
            raise NotFoundError(f"model {name!r} has no versions", details={"model": name})
        version = max(v.version for v in versions)
    card = registry.call(ModelRegistry.card, name, version)
    info = registry.call(ModelRegistry.version, name, version)
    history = registry.call(ModelRegistry.alias_history, name)
    card = card.with_registry_record(version, info.tags, history)
    text = str(card.to_html() if fmt == "html" else card.to_markdown())
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"model card of {name} v{version} written to {output} ({fmt})")
    else:
        console.print(text, markup=False, highlight=False)
    return text
