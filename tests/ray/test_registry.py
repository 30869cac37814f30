"""ModelRegistry over MLflow, on SQLite and on the real PostgreSQL, in-process and as an actor.

Every test runs once per backend. The PostgreSQL database is created for this
session and dropped afterwards (connections terminated first). Every writing call
carries a token of the default policy, checked by a real governance service (a
checker in this process; the governance actor for the registry actor): the
registrant is ``ml-engineer``, the approver ``approver``, rollbacks are ``admin``'s.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from governed import Governed, complete_card
from in_process_bus import InProcessBus

from entai.actors.bus import PlatformEvents
from entai.actors.core import ActorService, service_actor
from entai.actors.governance import ACTOR_NAME as GOVERNANCE
from entai.actors.governance import GovernanceAuditor, start_governance
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import EVALUATIONS_TAG, ModelRegistry, ModelRegistryActor
from entai.shared.core import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PromotionRejectedError,
)
from entai.shared.data import PlatformEventKind
from entai.shared.governance import service_credential
from entai.shared.models import PromotionPolicy
from entai.shared.settings import MlflowSettings, load_settings, resolve_service_secret

POLICY = PromotionPolicy(min_metrics={"valid_auc": 0.7}, tolerance=0.01)
FEATURES = ["f0", "f1", "f2"]


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


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Governed:
    """A governance checker in this process, over a home of its own."""
    root = tmp_path_factory.mktemp("governance")
    return Governed(load_settings(home=root / "home", lake={"root": str(root / "lake")}).resolved())


@pytest.fixture(scope="module")
def lead(governed: Governed) -> str:
    """A token of ``lead``, who may both register and approve (not the same version)."""
    governed.checker.set_principal(governed.admin, "lead", ["ml-engineer", "approver"])
    return governed.token("lead")


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def registry(settings: MlflowSettings, governed: Governed, bus: InProcessBus) -> ModelRegistry:
    events = PlatformEvents(load_settings(), bus=bus)
    return governed.registry(settings, policy=POLICY, events=events)


def _audited(governed: Governed, action: str, name: str) -> list[tuple[str, str, str, str]]:
    """The audit log's ``action`` entries about model ``name``, oldest first."""
    return [
        (e.action, e.principal, e.resource, e.decision)
        for e in governed.audited(action=action)
        if e.resource.split("/")[0].split("@")[0] == name
    ]


@pytest.fixture(scope="module")
def governance_actor(
    ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GovernanceAuditor, dict[str, str]]]:
    """The governance actor (a namespace and home of its own), the registry's door to
    it (the registry's service credential) and tokens it minted, by principal."""
    root = tmp_path_factory.mktemp("governance-actor")
    settings = load_settings(home=root / "home", lake={"root": str(root / "lake")}).resolved()
    handle = start_governance(settings, f"entai-registry-gov-{uuid.uuid4().hex[:8]}")
    try:
        ray_cluster.get(handle.__ray_ready__.remote())  # the admin token file exists
        admin = settings.security.token_file.read_text().strip()
        tokens = {
            principal: ray_cluster.get(handle.create_token.remote(admin, principal))[0]
            for principal in ("ml-engineer", "approver", "admin")
        }
        credential = service_credential(resolve_service_secret(settings), REGISTRY)
        yield GovernanceAuditor(ActorService(GOVERNANCE, handle), credential), tokens
    finally:
        ray_cluster.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def registry_actor(
    ray_cluster: Any,
    settings: MlflowSettings,
    governance_actor: tuple[GovernanceAuditor, dict[str, str]],
) -> Iterator[Any]:
    """One registry actor over this backend for the tests that call it through Ray
    (each start imports MLflow: about 10 s on a loaded 2-core machine). A test may kill
    it with restart (Ray restarts it); each test uses model names of its own."""
    namespace = ray_cluster.get_runtime_context().namespace
    governance, _ = governance_actor
    handle = service_actor(
        ModelRegistryActor,
        f"registry-{uuid.uuid4().hex[:6]}",
        namespace,
        settings,
        governance,
        policy=POLICY,
    )
    try:
        yield handle
    finally:
        ray_cluster.kill(handle, no_restart=True)


def _name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def _register(
    registry: Any,
    logged: tuple[str, str],
    name: str,
    *,
    token: str,
    auc: float = 0.8,
    valid: str = "v1",
    card: bool = True,
) -> int:
    info = registry.register(
        logged[0],
        name,
        token=token,
        lineage={"entai.dataset_id": "ts-1", "entai.feature_service": "fs"},
        run_id=logged[1],
        metrics={"valid_auc": auc},
        validation_dataset_id=valid,
        card=complete_card(name) if card else None,
    )
    return int(info.version)


def test_register_keeps_lineage_metrics_and_card(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    name = _name()
    version = _register(registry, logged_model, name, auc=0.83, token=governed.token("ml-engineer"))
    info = registry.version(name, version)
    assert info.tags["entai.registrant"] == "ml-engineer"  # the token's principal
    assert info.tags["entai.dataset_id"] == "ts-1"
    assert info.metrics == {"valid_auc": 0.83}
    assert registry.card(name, version) == complete_card(name)
    assert [v.version for v in registry.versions(name)] == [version]
    with pytest.raises(NotFoundError):
        registry.version(name, version + 1)
    [entry] = [
        e for e in governed.audited(action="models:register") if e.resource == f"{name}/{version}"
    ]
    assert entry.principal == "ml-engineer" and entry.decision == "allow"
    assert entry.details["recorded_by"] == REGISTRY  # the registry wrote it, for the caller


def test_every_writing_call_needs_a_token_with_its_permission(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    name = _name()
    app, engineer = governed.token("app"), governed.token("ml-engineer")
    with pytest.raises(PermissionDeniedError):  # app may predict, not register
        _register(registry, logged_model, name, token=app)
    with pytest.raises(AuthenticationError):  # a principal's name proves nothing
        _register(registry, logged_model, name, token="ml-engineer")
    with pytest.raises(NotFoundError):
        registry.versions(name)  # neither refused call registered anything
    version = _register(registry, logged_model, name, token=engineer, card=False)
    with pytest.raises(PermissionDeniedError):  # registering is not approving
        registry.promote(name, version, token=engineer)
    with pytest.raises(PermissionDeniedError):
        registry.set_card(name, version, complete_card(name), token=app)
    with pytest.raises(PermissionDeniedError):
        registry.record_evaluation(name, version, "v9", {"valid_auc": 0.9}, token=app)
    with pytest.raises(PermissionDeniedError):
        registry.set_alias(name, "shadow", version, token=app, reason="mirror")
    with pytest.raises(PermissionDeniedError):
        registry.rollback(name, token=engineer)
    assert registry.alias_history(name) == []
    assert "v9" not in registry.version(name, version).tags.get(EVALUATIONS_TAG, "{}")
    with pytest.raises(NotFoundError):
        registry.card(name, version)  # the refused set_card stored none
    denials = [e for e in governed.audited() if e.resource == f"model:{name}"]
    assert [(e.principal, e.action, e.decision) for e in denials] == [
        ("app", "models:register", "deny"),
        ("ml-engineer", "models:approve", "deny"),
        ("app", "models:register", "deny"),
        ("app", "models:register", "deny"),
        ("app", "models:register", "deny"),
        ("ml-engineer", "models:approve", "deny"),
    ]


def test_the_champion_alias_is_never_set_by_hand(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    name = _name()
    engineer = governed.token("ml-engineer")
    version = _register(registry, logged_model, name, token=engineer)
    for token in (engineer, governed.admin):  # not even an admin skips the gates
        with pytest.raises(InvalidInputError, match="gated") as refused:
            registry.set_alias(name, "champion", version, token=token, reason="first model")
        assert refused.value.details["alias"] == "champion"
    assert registry.alias_history(name) == []
    with pytest.raises(NotFoundError):
        registry.resolve(name, "champion")
    registry.promote(name, version, token=governed.token("approver"), reason="first model")
    assert registry.resolve(name, "champion").version == version


def test_each_failed_gate_refuses_with_its_reason(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed, lead: str
) -> None:
    name = _name()
    engineer, approver = governed.token("ml-engineer"), governed.token("approver")

    def refused(version: int) -> list[str]:
        with pytest.raises(PromotionRejectedError) as err:
            registry.promote(name, version, token=approver, reason="try")
        failures = err.value.details["failures"]
        assert all(f["reason"] for f in failures)
        return [f["gate"] for f in failures]

    def register(**kwargs: Any) -> int:
        return _register(registry, logged_model, name, **{"token": engineer, **kwargs})

    assert refused(register(auc=0.65)) == ["metric_thresholds"]
    assert refused(register(auc=0.9, card=False)) == ["model_card"]
    champion = register(auc=0.85)
    registry.promote(name, champion, token=approver, reason="first model")
    worse = register(auc=0.80)
    assert refused(worse) == ["not_worse_than_champion"]
    good = register(auc=0.86, token=lead)
    with pytest.raises(PromotionRejectedError, match="distinct_approver"):
        registry.promote(name, good, token=lead)  # lead may approve, not its own version
    other_set = register(auc=0.95, valid="v2")
    with pytest.raises(PromotionRejectedError, match="share no evaluation dataset"):
        registry.promote(name, other_set, token=approver)
    assert registry.resolve(name, "champion").version == champion
    assert ("models:promote", "lead", f"{name}/{good}", "deny") in _audited(
        governed, "models:promote", name
    )

    registry.promote(name, good, token=approver, reason="better on v1")
    assert registry.resolve(name, "champion").version == good
    last = registry.alias_history(name)[-1]
    assert (last["kind"], last["by"], last["previous"], last["reason"]) == (
        "promote",
        "approver",
        champion,
        "better on v1",
    )
    assert _audited(governed, "models:promote", name)[-1] == (
        "models:promote",
        "approver",
        f"{name}@champion",
        "allow",
    )


def test_recorded_evaluation_on_a_common_set_unblocks_the_comparison(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    name = _name()
    engineer, approver = governed.token("ml-engineer"), governed.token("approver")
    champion = _register(registry, logged_model, name, auc=0.80, valid="v1", token=engineer)
    registry.promote(name, champion, token=approver, reason="first")
    challenger = _register(registry, logged_model, name, auc=0.84, valid="v2", token=engineer)
    with pytest.raises(PromotionRejectedError):
        registry.promote(name, challenger, token=approver)
    registry.record_evaluation(name, champion, "v2", {"valid_auc": 0.83}, token=engineer)
    registry.promote(name, challenger, token=approver)
    assert registry.resolve(name, "champion").version == challenger


def test_rollback_restores_the_previous_champion(
    registry: ModelRegistry, logged_model: tuple[str, str], bus: InProcessBus, governed: Governed
) -> None:
    name = _name()
    engineer, approver, ops = (governed.token(p) for p in ("ml-engineer", "approver", "admin"))
    v1, v2, v3 = (
        _register(registry, logged_model, name, auc=a, token=engineer) for a in (0.80, 0.81, 0.82)
    )
    registry.promote(name, v1, token=approver, reason="first")
    with pytest.raises(ConflictError):
        registry.rollback(name, token=ops)
    registry.promote(name, v2, token=approver)
    registry.promote(name, v3, token=approver)
    registry.set_alias(name, "shadow", v1, token=engineer, reason="shadow traffic")
    assert registry.rollback(name, token=ops, reason="latency").version == v2
    assert registry.resolve(name, "champion").version == v2
    assert registry.rollback(name, token=ops, reason="still bad").version == v1
    assert registry.resolve(name, "shadow").version == v1
    history = registry.alias_history(name)
    assert [(h["alias"], h["kind"], h["version"]) for h in history][-2:] == [
        ("champion", "rollback", v2),
        ("champion", "rollback", v1),
    ]
    assert history[-1]["by"] == "admin" and history[-1]["at"]
    assert history[-3]["by"] == "ml-engineer"  # the shadow move
    with pytest.raises(InvalidInputError):
        registry.rollback(name, alias="production", token=ops)
    # Every move was announced on the bus, in order, with the holder it replaced.
    moved = bus.read(PlatformEventKind.ALIAS_MOVED.value, "test", block_s=0)
    assert [
        (m.event.payload["alias"], m.event.payload["kind"], m.event.payload["version"])
        for m in moved
    ] == [(h["alias"], h["kind"], h["version"]) for h in history]
    assert [m.event.payload["previous"] for m in moved][-2:] == [v3, v2]
    assert [m.event.payload["revision"] for m in moved] == list(range(1, len(history) + 1))


def test_load_by_alias(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    import mlflow.xgboost

    name = _name()
    engineer = governed.token("ml-engineer")
    version = _register(registry, logged_model, name, token=engineer)
    registry.set_alias(name, "challenger", version, token=engineer, reason="new")
    booster = mlflow.xgboost.load_model(f"models:/{name}@challenger")
    assert list(booster.feature_names) == FEATURES


@pytest.mark.chaos  # kills the registry actor: `make test-chaos` (CI runs it)
def test_actor_restart_keeps_aliases_versions_and_history(
    ray_cluster: Any,
    registry_actor: Any,
    logged_model: tuple[str, str],
    governance_actor: tuple[GovernanceAuditor, dict[str, str]],
) -> None:
    ray = ray_cluster
    handle = registry_actor
    _, tokens = governance_actor
    name = _name()
    v1, v2 = (
        ray.get(
            handle.register.remote(
                logged_model[0],
                name,
                token=tokens["ml-engineer"],
                metrics={"valid_auc": auc},
                validation_dataset_id="v1",
                card=complete_card(name),
                run_id=logged_model[1],
            )
        ).version
        for auc in (0.8, 0.82)
    )
    ray.get(handle.promote.remote(name, v1, token=tokens["approver"], reason="first"))
    ray.get(handle.promote.remote(name, v2, token=tokens["approver"]))
    before = ray.get(handle.subscribe.remote(name))
    history = ray.get(handle.alias_history.remote(name))
    assert [h["by"] for h in history] == ["approver", "approver"]

    ray.kill(handle, no_restart=False)
    after = ray.get(handle.subscribe.remote(name), timeout=120)
    assert after == before == {"name": name, "revision": 2, "aliases": {"champion": v2}}
    assert ray.get(handle.alias_history.remote(name)) == history
    versions = ray.get(handle.versions.remote(name))
    assert [(v.version, v.aliases) for v in versions] == [(v1, ()), (v2, ("champion",))]
    assert ray.get(handle.version.remote(name, v1)).tags["entai.registrant"] == "ml-engineer"
    with pytest.raises(PermissionDeniedError):  # the restarted actor still authenticates
        ray.get(handle.rollback.remote(name, token=tokens["ml-engineer"]))
    assert ray.get(handle.rollback.remote(name, token=tokens["admin"])).version == v1


def test_subscribers_wake_on_alias_change(
    ray_cluster: Any,
    registry_actor: Any,
    logged_model: tuple[str, str],
    governance_actor: tuple[GovernanceAuditor, dict[str, str]],
) -> None:
    ray = ray_cluster
    handle = registry_actor
    engineer = governance_actor[1]["ml-engineer"]
    name = _name()
    version = ray.get(handle.register.remote(logged_model[0], name, token=engineer)).version
    start = ray.get(handle.subscribe.remote(name))
    assert start["revision"] == 0 and start["aliases"] == {}
    unchanged = ray.get(handle.wait_for_change.remote(name, 0, 0.2))
    assert unchanged["revision"] == 0
    waiters = [handle.wait_for_change.remote(name, 0, 300.0) for _ in range(3)]
    ready, _ = ray.wait(waiters, timeout=1.0)
    assert ready == []  # they block on the actor until something moves
    ray.get(handle.set_alias.remote(name, "shadow", version, token=engineer, reason="mirror"))
    woken = ray.get(waiters, timeout=60)
    assert all(w == {"name": name, "revision": 1, "aliases": {"shadow": version}} for w in woken)


def test_in_process_waiter_is_notified(
    registry: ModelRegistry, logged_model: tuple[str, str], governed: Governed
) -> None:
    name = _name()
    engineer = governed.token("ml-engineer")
    version = _register(registry, logged_model, name, token=engineer)
    seen: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: seen.append(registry.wait_for_change(name, 0, 120.0)))
    waiter.start()
    registry.set_alias(name, "challenger", version, token=engineer, reason="new")
    waiter.join(timeout=60)
    assert seen and seen[0]["revision"] == 1
