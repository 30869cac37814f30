"""The monitor's lineage source gives a version's reference with the fairness columns
its model card names (MLflow on SQLite, no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from governed import Governed
from logged_models import log_small_model

from entai.actors.backends import configure_mlflow
from entai.actors.models import lineage_reference_source
from entai.shared.models import ModelCard, binary_fairness
from entai.shared.monitoring import (
    REFERENCE_ARTIFACT,
    REFERENCE_TAG,
    MonitoringReference,
    artifact_uri,
)
from entai.shared.settings import load_settings


def test_the_reference_carries_the_cards_fairness_columns(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path).resolved()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    logged = log_small_model(settings, frame, (frame["a"] > 0).astype(int))
    governed = Governed(settings)
    registry, engineer = governed.registry(), governed.token("ml-engineer")
    version = int(
        registry.register(logged.model_uri, "m", token=engineer, run_id=logged.run_id).version
    )
    scores = rng.random(200)
    reference = MonitoringReference.from_scores(frame, ["a", "b"], scores).to_dict()
    client = configure_mlflow(settings.mlflow)
    client.log_dict(logged.run_id, reference, REFERENCE_ARTIFACT)
    uri = artifact_uri(logged.run_id, REFERENCE_ARTIFACT)
    client.set_model_version_tag("m", str(version), REFERENCE_TAG, uri)
    source = lineage_reference_source(settings.mlflow)
    assert source("m", version) == reference  # no card: no fairness columns

    report = binary_fairness(
        (scores > 0.5).astype(int), scores, np.where(frame["b"] > 0, "x", "y"),
        attribute="b_sign", threshold=0.4, min_group_size=20,
    )  # fmt: skip
    card = ModelCard(model_name="m", fairness={"b_sign": report})
    registry.set_card("m", version, card, token=engineer)
    document = source("m", version)
    assert document is not None
    assert document["fairness"] == {"b_sign": {"threshold": 0.4, "min_group_size": 20, "bins": 10}}
    parsed = MonitoringReference.from_dict(document)
    assert parsed.fairness == document["fairness"]
    assert MonitoringReference.from_dict(parsed.to_dict()) == parsed
