"""`entai models ...` against a local registry (platform down), gates enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from entai.cli import app
from entai.shared.core import PermissionDeniedError, PromotionRejectedError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.delenv("ENTAI_TOKEN", raising=False)
    return tmp_path


def _register(home: Path) -> int:
    import numpy as np
    import pandas as pd
    from logged_models import log_small_model

    from entai.actors.models import ModelRegistry
    from entai.shared.settings import load_settings

    settings = load_settings().resolved()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    logged = log_small_model(settings, frame, (frame["a"] > 0).astype(int), rounds=3)
    info = ModelRegistry(settings.mlflow).register(
        logged.model_uri, "m", registrant="data-scientist", run_id=logged.run_id
    )
    return int(info.version)


def test_promote_goes_through_the_gates_and_needs_approve(home: Path) -> None:
    runner = CliRunner()
    version = _register(home)
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "m" in listed.output
    token = runner.invoke(app, ["tokens", "create", "app"]).output
    app_token = next(line for line in token.splitlines() if line.startswith("entai_"))
    denied = runner.invoke(app, ["models", "promote", "m", str(version), "--token", app_token])
    assert isinstance(denied.exception, PermissionDeniedError)
    rejected = runner.invoke(app, ["models", "promote", "m", str(version), "--reason", "try"])
    assert isinstance(rejected.exception, PromotionRejectedError)
    message = str(rejected.exception)
    assert "card" in message and "valid_auc" in message
    shown = runner.invoke(app, ["models", "show", "m"])
    assert shown.exit_code == 0 and "data-scientist" in shown.output


def test_card_renders_a_version_by_alias_with_lineage_and_approvals(home: Path) -> None:
    from entai.actors.models import ModelRegistry
    from entai.shared.models import (
        FeatureImportance,
        GlobalExplanation,
        ModelCard,
        TrainingDataSummary,
    )
    from entai.shared.settings import load_settings

    version = _register(home)
    registry = ModelRegistry(load_settings().resolved().mlflow)
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
    registry.set_card("m", version, card, by="data-scientist")
    registry.set_alias("m", "challenger", version, by="admin", reason="first look")
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "card", "m@challenger"])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert f"# Model card: m v{version}" in text
    assert "time range: 2026-01-01T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00" in text
    assert "- entai.registrant: data-scientist" in text
    assert "challenger (set) by admin: first look" in text
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
