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
    import xgboost

    from entai.actors.models import ModelRegistry
    from entai.pipelines.training import TrainOutcome, log_xgboost_run
    from entai.shared.settings import load_settings

    settings = load_settings().resolved()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    booster = xgboost.train(
        {"objective": "binary:logistic"},
        xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=["a", "b"]),
        num_boost_round=3,
    )
    import pandas as pd

    frame = pd.DataFrame(x, columns=["a", "b"])
    logged = log_xgboost_run(
        settings.mlflow,
        TrainOutcome(booster=booster, evals={}, feature_columns=("a", "b")),
        params={},
        metrics={},
        training_data=frame,
        dataset_name="t",
        tags={},
        run_name="t",
    )
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
