"""A logged training run keeps no raw training row: a signature, never an input example."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    return tmp_path


def test_a_logged_run_stores_the_signature_but_no_training_row(home: Path) -> None:
    import mlflow
    import numpy as np
    import pandas as pd
    from logged_models import log_small_model

    from entai.shared.settings import load_settings

    settings = load_settings().resolved()
    rng = np.random.default_rng(7)
    # Values no artifact could hold by chance: each row's "spend" is 9_137_000 + i + 0.25.
    frame = pd.DataFrame(
        {"spend": 9_137_000.25 + np.arange(200.0), "visits": rng.integers(0, 3, 200)}
    )
    logged = log_small_model(settings, frame, (frame["visits"] > 0).astype(int))
    model = mlflow.models.get_model_info(logged.model_uri)
    assert model.signature is not None
    assert [c.name for c in model.signature.inputs.inputs] == ["spend", "visits"]
    files = [p for p in home.rglob("*") if p.is_file() and "mlruns" not in p.parts[:1]]
    texts = [p.read_bytes() for p in files if p.suffix in {".json", ".yaml", ".txt", ".db", ""}]
    assert texts, "the run logged artifacts"
    for value in frame["spend"].head(10):
        assert not any(str(value).encode() in text for text in texts), value
    assert not any(p.name.startswith(("input_example", "serving_input")) for p in files)
