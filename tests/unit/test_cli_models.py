"""`entai models ...` against a local registry (platform down), gates enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
from governed import Governed
from typer.testing import CliRunner

from entai.cli import app
from entai.shared.core import PermissionDeniedError, PromotionRejectedError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.delenv("ENTAI_TOKEN", raising=False)
    return tmp_path


def _register(home: Path) -> tuple[Governed, int]:
    """Model ``m`` v1, registered with an ml-engineer's token (no metrics, no card)."""
    import numpy as np
    import pandas as pd
    from logged_models import log_small_model

    from entai.shared.settings import load_settings

    settings = load_settings().resolved()
    governed = Governed(settings)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    logged = log_small_model(settings, frame, (frame["a"] > 0).astype(int), rounds=3)
    info = governed.registry().register(
        logged.model_uri, "m", token=governed.token("ml-engineer"), run_id=logged.run_id
    )
    return governed, int(info.version)


def test_promote_goes_through_the_gates_and_needs_approve(home: Path) -> None:
    runner = CliRunner()
    governed, version = _register(home)
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "m" in listed.output
    token = runner.invoke(app, ["tokens", "create", "app"]).output
    app_token = next(line for line in token.splitlines() if line.startswith("entai_"))
    denied = runner.invoke(app, ["models", "promote", "m", str(version), "--token", app_token])
    assert isinstance(denied.exception, PermissionDeniedError)
    engineer = governed.token("ml-engineer")  # may register, not approve
    denied = runner.invoke(app, ["models", "promote", "m", str(version), "--token", engineer])
    assert isinstance(denied.exception, PermissionDeniedError)
    rejected = runner.invoke(app, ["models", "promote", "m", str(version), "--reason", "try"])
    assert isinstance(rejected.exception, PromotionRejectedError)
    message = str(rejected.exception)
    assert "card" in message and "valid_auc" in message
    shown = runner.invoke(app, ["models", "show", "m"])
    assert shown.exit_code == 0 and "ml-engineer" in shown.output  # the token's principal
    refusals = governed.audited(action="models:promote")
    assert [(e.principal, e.decision) for e in refusals] == [("admin", "deny")]
    denials = governed.audited(action="models:approve")
    assert [(e.principal, e.decision) for e in denials] == [
        ("app", "deny"),
        ("ml-engineer", "deny"),
    ]


def test_card_renders_a_version_by_alias_with_lineage_and_approvals(home: Path) -> None:
    from entai.shared.models import (
        FeatureImportance,
        GlobalExplanation,
        ModelCard,
        TrainingDataSummary,
    )

    governed, version = _register(home)
    registry = governed.registry()
    card = ModelCard(
        model_name="m",
        intended_use="Rank <users> for email.",
        training_data=TrainingDataSummary(
            dataset_id="ts-1",
            feature_service="fs",
            rows=200,
            time_range=("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"),
        ),
        metrics={"valid_auc": 0.91},
        limitations=("Synthetic data only.",),
        owners=("ml-team",),
        explanations=GlobalExplanation(
            method="tree_shap",
            rows=50,
            base_value=-0.2,
            importance={"a": 0.8, "b": 0.1},
            top=(FeatureImportance(feature="a", mean_abs_contribution=0.8, mean_contribution=0.1),),
        ),
    )
    engineer = governed.token("ml-engineer")
    registry.set_card("m", version, card, token=engineer)
    registry.set_alias("m", "challenger", version, token=engineer, reason="first look")
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "card", "m@challenger"])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert f"# Model card: m v{version}" in text
    assert "time range: 2026-01-01T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00" in text
    assert "- entai.registrant: ml-engineer" in text
    assert "challenger (set) by ml-engineer: first look" in text
    assert "## Top features" in text and "valid_auc: 0.9100" in text

    out = home / "card.html"
    args = ["models", "card", "m", str(version), "--format", "html", "-o", str(out)]
    written = runner.invoke(app, args)
    assert written.exit_code == 0, written.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Rank &lt;users&gt; for email." in page
    assert "<script" not in page and "http" not in page  # self-contained
    assert "<tr><td>a</td><td>0.8000</td><td>0.1000</td></tr>" in page

    bad = runner.invoke(app, ["models", "card", "m", "--format", "pdf"])
    assert bad.exit_code != 0


def test_show_lists_each_versions_aliases_after_a_restart(home: Path) -> None:
    # MLflow's version search leaves aliases out: a registry (restarted or not) that
    # trusted it showed none, so `models show` lost the champion after a head restart.
    governed, version = _register(home)
    engineer = governed.token("ml-engineer")
    governed.registry().set_alias("m", "challenger", version, token=engineer, reason="look")
    fresh = governed.registry()  # a restarted registry over the same store
    assert [(v.version, v.aliases) for v in fresh.versions("m")] == [(version, ("challenger",))]
    shown = CliRunner().invoke(app, ["models", "show", "m"])
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if f" {version} " in line)
    assert "challenger" in row and "ml-engineer" in row, shown.output
