"""ModelRegistry over MLflow, on SQLite and on the real PostgreSQL, in-process and as an actor.

Every test runs once per backend. The PostgreSQL database is created for this
session and dropped afterwards (connections terminated first).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from in_process_bus import InProcessBus

from entai.actors.bus import PlatformEvents
from entai.actors.core import service_actor
from entai.actors.models import ModelRegistry, ModelRegistryActor
from entai.shared.core import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PromotionRejectedError,
)
from entai.shared.data import PlatformEventKind
from entai.shared.models import ModelCard, PromotionPolicy, TrainingDataSummary
from entai.shared.settings import MlflowSettings, load_settings

POLICY = PromotionPolicy(min_metrics={"valid_auc": 0.7}, tolerance=0.01)
FEATURES = ["f0", "f1", "f2"]


def _card(name: str, **update: Any) -> ModelCard:
    card = ModelCard(
        model_name=name,
        intended_use="Rank users for a weekly email.",
        training_data=TrainingDataSummary(dataset_id="ts-1", feature_service="fs", rows=100),
        metrics={"valid_auc": 0.8},
        limitations=("Untested on new markets.",),
        owners=("ml-team",),
    )
    return card.model_copy(update=update)


def _pg_admin(dsn: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[MlflowSettings]:
    root = tmp_path_factory.mktemp(f"mlflow-{request.param}")
    if request.param == "sqlite":
        yield MlflowSettings(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifact_root=str(root / "artifacts"),
            experiment="registry-test",
        )
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    database = f"entai_test_{run_id}"
    conn = _pg_admin(dsn)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    try:
        yield MlflowSettings(
            tracking_uri=dsn.rsplit("/", 1)[0] + f"/{database}",
            artifact_root=str(root / "artifacts"),
            experiment="registry-test",
        )
    finally:
        import mlflow

        after = f"sqlite:///{root / 'after.db'}"  # let go of the pg engines
        mlflow.set_tracking_uri(after)
        mlflow.set_registry_uri(after)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.close()


@pytest.fixture(scope="module")
def logged_model(settings: MlflowSettings) -> tuple[str, str]:
    """One small XGBoost model logged to this backend: (model_uri, run_id)."""
    import xgboost

    from entai.pipelines.training import TrainOutcome, log_xgboost_run

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    label = (frame["f0"] + rng.normal(size=200) > 0).astype(int)
    booster = xgboost.train(
        {"objective": "binary:logistic", "nthread": 1},
        xgboost.DMatrix(frame, label=label),
        num_boost_round=5,
    )
    logged = log_xgboost_run(
        settings,
        TrainOutcome(booster=booster, evals={}, feature_columns=tuple(FEATURES)),
        params={"rounds": 5},
        metrics={"valid_auc": 0.8},
        training_data=frame.assign(label=label),
        dataset_name="tiny",
        tags={},
        run_name="tiny",
    )
    return logged.model_uri, logged.run_id


@pytest.fixture
def audit() -> list[tuple[str, str, str, str]]:
    return []


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def registry(
    settings: MlflowSettings, audit: list[tuple[str, str, str, str]], bus: InProcessBus
) -> ModelRegistry:
    def sink(action: str, principal: str, resource: str, decision: str, **_: Any) -> None:
        audit.append((action, principal, resource, decision))

    events = PlatformEvents(load_settings(), bus=bus)
    return ModelRegistry(settings, policy=POLICY, audit=sink, events=events)


def _name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def _register(
    registry: Any,
    logged: tuple[str, str],
    name: str,
    *,
    auc: float = 0.8,
    valid: str = "v1",
    registrant: str = "alice",
    card: bool = True,
) -> int:
    info = registry.register(
        logged[0],
        name,
        registrant=registrant,
        lineage={"entai.dataset_id": "ts-1", "entai.feature_service": "fs"},
        run_id=logged[1],
        metrics={"valid_auc": auc},
        validation_dataset_id=valid,
        card=_card(name) if card else None,
    )
    return int(info.version)


def test_register_keeps_lineage_metrics_and_card(
    registry: ModelRegistry, logged_model: tuple[str, str]
) -> None:
    name = _name()
    version = _register(registry, logged_model, name, auc=0.83)
    info = registry.version(name, version)
    assert info.tags["entai.registrant"] == "alice"
    assert info.tags["entai.dataset_id"] == "ts-1"
    assert info.metrics == {"valid_auc": 0.83}
    assert registry.card(name, version) == _card(name)
    assert [v.version for v in registry.versions(name)] == [version]
    with pytest.raises(NotFoundError):
        registry.version(name, version + 1)


def test_each_failed_gate_refuses_with_its_reason(
    registry: ModelRegistry, logged_model: tuple[str, str], audit: list[tuple[str, str, str, str]]
) -> None:
    name = _name()

    def refused(version: int) -> list[str]:
        with pytest.raises(PromotionRejectedError) as err:
            registry.promote(name, version, approver="bob", reason="try")
        failures = err.value.details["failures"]
        assert all(f["reason"] for f in failures)
        return [f["gate"] for f in failures]

    assert refused(_register(registry, logged_model, name, auc=0.65)) == ["metric_thresholds"]
    no_card = _register(registry, logged_model, name, auc=0.9, card=False)
    assert refused(no_card) == ["model_card"]
    champion = _register(registry, logged_model, name, auc=0.85)
    registry.set_alias(name, "champion", champion, by="admin", reason="first model")
    worse = _register(registry, logged_model, name, auc=0.80)
    assert refused(worse) == ["not_worse_than_champion"]
    good = _register(registry, logged_model, name, auc=0.86)
    with pytest.raises(PromotionRejectedError, match="distinct_approver"):
        registry.promote(name, good, approver="alice")
    other_set = _register(registry, logged_model, name, auc=0.95, valid="v2")
    with pytest.raises(PromotionRejectedError, match="share no evaluation dataset"):
        registry.promote(name, other_set, approver="bob")
    assert registry.resolve(name, "champion").version == champion
    assert ("models:promote", "alice", f"{name}/{good}", "deny") in audit

    registry.promote(name, good, approver="bob", reason="better on v1")
    assert registry.resolve(name, "champion").version == good
    last = registry.alias_history(name)[-1]
    assert (last["kind"], last["by"], last["previous"], last["reason"]) == (
        "promote",
        "bob",
        champion,
        "better on v1",
    )
    assert audit[-1] == ("models:promote", "bob", f"{name}@champion", "allow")


def test_recorded_evaluation_on_a_common_set_unblocks_the_comparison(
    registry: ModelRegistry, logged_model: tuple[str, str]
) -> None:
    name = _name()
    champion = _register(registry, logged_model, name, auc=0.80, valid="v1")
    registry.set_alias(name, "champion", champion, by="admin", reason="first")
    challenger = _register(registry, logged_model, name, auc=0.84, valid="v2")
    with pytest.raises(PromotionRejectedError):
        registry.promote(name, challenger, approver="bob")
    registry.record_evaluation(name, champion, "v2", {"valid_auc": 0.83}, by="ci")
    registry.promote(name, challenger, approver="bob")
    assert registry.resolve(name, "champion").version == challenger


def test_rollback_restores_the_previous_champion(
    registry: ModelRegistry, logged_model: tuple[str, str], bus: InProcessBus
) -> None:
    name = _name()
    v1, v2, v3 = (_register(registry, logged_model, name, auc=a) for a in (0.80, 0.81, 0.82))
    registry.set_alias(name, "champion", v1, by="admin", reason="first")
    with pytest.raises(ConflictError):
        registry.rollback(name, by="ops")
    registry.promote(name, v2, approver="bob")
    registry.promote(name, v3, approver="bob")
    registry.set_alias(name, "shadow", v1, by="admin", reason="shadow traffic")
    assert registry.rollback(name, by="ops", reason="latency").version == v2
    assert registry.resolve(name, "champion").version == v2
    assert registry.rollback(name, by="ops", reason="still bad").version == v1
    assert registry.resolve(name, "shadow").version == v1
    history = registry.alias_history(name)
    assert [(h["alias"], h["kind"], h["version"]) for h in history][-2:] == [
        ("champion", "rollback", v2),
        ("champion", "rollback", v1),
    ]
    assert history[-1]["by"] == "ops" and history[-1]["at"]
    with pytest.raises(InvalidInputError):
        registry.rollback(name, alias="production", by="ops")
    # Every move was announced on the bus, in order, with the holder it replaced.
    moved = bus.read(PlatformEventKind.ALIAS_MOVED.value, "test", block_s=0)
    assert [
        (m.event.payload["alias"], m.event.payload["kind"], m.event.payload["version"])
        for m in moved
    ] == [(h["alias"], h["kind"], h["version"]) for h in history]
    assert [m.event.payload["previous"] for m in moved][-2:] == [v3, v2]
    assert [m.event.payload["revision"] for m in moved] == list(range(1, len(history) + 1))


def test_load_by_alias(registry: ModelRegistry, logged_model: tuple[str, str]) -> None:
    import mlflow.xgboost

    name = _name()
    version = _register(registry, logged_model, name)
    registry.set_alias(name, "challenger", version, by="admin", reason="new")
    booster = mlflow.xgboost.load_model(f"models:/{name}@challenger")
    assert list(booster.feature_names) == FEATURES


def test_actor_restart_keeps_aliases_versions_and_history(
    ray_cluster: Any, settings: MlflowSettings, logged_model: tuple[str, str]
) -> None:
    import ray

    namespace = ray.get_runtime_context().namespace
    actor_name = f"registry-{uuid.uuid4().hex[:6]}"
    handle = service_actor(ModelRegistryActor, actor_name, namespace, settings, policy=POLICY)
    try:
        name = _name()
        v1 = ray.get(
            handle.register.remote(
                logged_model[0],
                name,
                registrant="alice",
                metrics={"valid_auc": 0.8},
                validation_dataset_id="v1",
                card=_card(name),
                run_id=logged_model[1],
            )
        ).version
        v2 = ray.get(
            handle.register.remote(
                logged_model[0],
                name,
                registrant="alice",
                metrics={"valid_auc": 0.82},
                validation_dataset_id="v1",
                card=_card(name),
                run_id=logged_model[1],
            )
        ).version
        ray.get(handle.set_alias.remote(name, "champion", v1, by="admin", reason="first"))
        ray.get(handle.promote.remote(name, v2, approver="bob"))
        before = ray.get(handle.subscribe.remote(name))
        history = ray.get(handle.alias_history.remote(name))

        ray.kill(handle, no_restart=False)
        after = ray.get(handle.subscribe.remote(name), timeout=120)
        assert after == before == {"name": name, "revision": 2, "aliases": {"champion": v2}}
        assert ray.get(handle.alias_history.remote(name)) == history
        assert [v.version for v in ray.get(handle.versions.remote(name))] == [v1, v2]
        assert ray.get(handle.rollback.remote(name, by="ops")).version == v1
    finally:
        ray.kill(handle, no_restart=True)


def test_subscribers_wake_on_alias_change(
    ray_cluster: Any, settings: MlflowSettings, logged_model: tuple[str, str]
) -> None:
    import ray

    namespace = ray.get_runtime_context().namespace
    handle = service_actor(
        ModelRegistryActor, f"registry-{uuid.uuid4().hex[:6]}", namespace, settings, policy=POLICY
    )
    try:
        name = _name()
        version = ray.get(handle.register.remote(logged_model[0], name, registrant="a")).version
        start = ray.get(handle.subscribe.remote(name))
        assert start["revision"] == 0 and start["aliases"] == {}
        unchanged = ray.get(handle.wait_for_change.remote(name, 0, 0.2))
        assert unchanged["revision"] == 0
        waiters = [handle.wait_for_change.remote(name, 0, 300.0) for _ in range(3)]
        ready, _ = ray.wait(waiters, timeout=1.0)
        assert ready == []  # they block on the actor until something moves
        ray.get(handle.set_alias.remote(name, "shadow", version, by="admin", reason="mirror"))
        woken = ray.get(waiters, timeout=60)
        assert all(
            w == {"name": name, "revision": 1, "aliases": {"shadow": version}} for w in woken
        )
    finally:
        ray.kill(handle, no_restart=True)


def test_in_process_waiter_is_notified(
    registry: ModelRegistry, logged_model: tuple[str, str]
) -> None:
    name = _name()
    version = _register(registry, logged_model, name)
    seen: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: seen.append(registry.wait_for_change(name, 0, 120.0)))
    waiter.start()
    registry.set_alias(name, "challenger", version, by="admin", reason="new")
    waiter.join(timeout=60)
    assert seen and seen[0]["revision"] == 1
