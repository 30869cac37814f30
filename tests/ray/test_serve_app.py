"""ModelRuntime against the real registry actor and MLflow: loads, follows, swaps."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _log_model(seed: int, names: list[str]) -> tuple[str, Any]:
    import mlflow
    import mlflow.xgboost
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(names)))
    y = (x[:, seed % len(names)] > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic"}, xgb.DMatrix(x, label=y, feature_names=names), 5
    )
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
    return info.model_uri, booster


def test_runtime_follows_the_registry_actor_and_swaps(ray_cluster: Any, tmp_path: Path) -> None:
    from entai.actors.backends import configure_mlflow
    from entai.actors.core import ActorService
    from entai.actors.governance import start_governance
    from entai.actors.models import ACTOR_NAME as REGISTRY
    from entai.actors.models import REGISTRANT_TAG, start_registry
    from entai.actors.services import service_governance
    from entai.deployments.model_runtime import ActorAliasWatcher, ModelRuntime, load_mlflow_model
    from entai.shared.models import PromotionPolicy
    from entai.shared.settings import load_settings

    namespace = f"serve-rt-{uuid.uuid4().hex[:8]}"
    settings = load_settings(home=tmp_path, ray={"namespace": namespace}).resolved()
    configure_mlflow(settings.mlflow)
    governance = start_governance(settings, namespace)
    ray_cluster.get(governance.__ray_ready__.remote(), timeout=120)
    admin = settings.security.token_file.read_text().strip()
    trainer, approver = (
        ray_cluster.get(governance.create_token.remote(admin, principal), timeout=60)[0]
        for principal in ("ml-engineer", "approver")
    )
    # Champion is gated: each move goes through `promote` (a permissive policy, but
    # four-eyes: the approver is not the registrant; one validation set to compare on).
    policy = PromotionPolicy(min_metrics={}, require_card=False)
    registry = start_registry(
        settings.mlflow, namespace, service_governance(settings, REGISTRY), policy=policy
    )
    names = ["a", "b", "c"]
    boosters = {}
    for seed in (1, 2):
        uri, booster = _log_model(seed, names)
        info = ray_cluster.get(
            registry.register.remote(
                uri, "rt", token=trainer, metrics={"valid_auc": 0.8}, validation_dataset_id="rt-v"
            ),
            timeout=120,
        )
        assert info.tags[REGISTRANT_TAG] == "ml-engineer"  # the token's principal
        boosters[info.version] = booster
    v1, v2 = sorted(boosters)
    ray_cluster.get(registry.promote.remote("rt", v1, token=approver, reason="t"), timeout=120)
    runtime = ModelRuntime(
        "rt",
        ActorAliasWatcher(ActorService("registry", registry)),
        load_mlflow_model,
        poll_timeout_s=2,
    )
    try:
        row = np.array([[0.3, -1.2, 0.8]])
        old = runtime.snapshot()["champion"]
        assert old.version == v1
        assert old.score(("a", "b", "c"), row)[0] == pytest.approx(
            float(boosters[v1].inplace_predict(row)[0]), rel=1e-6
        )
        runtime.start()
        ray_cluster.get(registry.promote.remote("rt", v2, token=approver, reason="t"), timeout=120)
        deadline = time.monotonic() + 60
        while runtime.versions().get("champion") != v2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert runtime.versions() == {"champion": v2}
        assert old.version == v1  # a request holding the old snapshot finishes on it
        assert runtime.following
    finally:
        runtime.stop()
        ray_cluster.kill(registry)
        ray_cluster.kill(governance)
