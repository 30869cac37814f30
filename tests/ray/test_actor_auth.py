"""A Ray job against the platform's own actors: without a token it can do nothing that
governance guards, with one exactly what the token's role allows.

The job is a Ray task that finds the governance and registry actors by name, as any
code on the cluster can. It tries what a name or a home-made ``Principal`` used to
allow (mint an admin token, read or forge audit entries, register under someone
else's name, promote, approve its own version, move ``champion`` past the gates) and
then does the allowed things with real tokens of the default policy's principals.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from governed import complete_card
from logged_models import log_small_model

from entai.actors.governance import ACTOR_NAME as GOVERNANCE
from entai.actors.governance import start_governance
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import start_registry
from entai.actors.services import service_governance
from entai.shared.governance import SERVICE_PREFIX, Principal
from entai.shared.models import PromotionPolicy
from entai.shared.settings import EntaiSettings, load_settings

MODEL = "fraud_detector"
POLICY = PromotionPolicy(min_metrics={"valid_auc": 0.7})


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntaiSettings]:
    """Governance and the registry as detached actors in a namespace of their own."""
    root: Path = tmp_path_factory.mktemp("actor-auth")
    namespace = f"entai-auth-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        home=root / "home",
        lake={"root": str(root / "lake")},
        ray={"namespace": namespace},
        mlflow={
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "artifact_root": str(root / "artifacts"),
        },
        security={"token_file": root / "home" / "admin_token"},
    ).resolved()
    governance = start_governance(settings, namespace)
    ray_cluster.get(governance.__ray_ready__.remote())
    registry = start_registry(
        settings.mlflow, namespace, service_governance(settings, REGISTRY), policy=POLICY
    )
    ray_cluster.get(registry.__ray_ready__.remote())
    try:
        yield settings
    finally:
        for handle in (registry, governance):
            ray_cluster.kill(handle, no_restart=True)


def _job(namespace: str, calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]]) -> Any:
    """Run ``calls`` (actor, method, args, kwargs) in a Ray task; each outcome is the
    result or ``("refused", error class name, message)``."""
    import ray

    @ray.remote(num_cpus=0)
    def job() -> list[Any]:
        outcomes: list[Any] = []
        for actor, method, args, kwargs in calls:
            handle = ray.get_actor(actor, namespace=namespace)
            try:
                outcomes.append(ray.get(getattr(handle, method).remote(*args, **kwargs)))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause
                outcomes.append(("refused", type(cause).__name__, str(cause)))
        return outcomes

    return ray.get(job.remote())


def _refusal(outcome: Any) -> str:
    assert isinstance(outcome, tuple) and outcome[0] == "refused", outcome
    return str(outcome[1])


def _token(settings: EntaiSettings, principal: str) -> str:
    admin = settings.security.token_file.read_text().strip()
    ((token, _record),) = _job(
        settings.ray.namespace, [(GOVERNANCE, "create_token", (admin, principal), {})]
    )
    return str(token)


def _logged(settings: EntaiSettings) -> str:
    frame = pd.DataFrame({"f0": [0.0, 1.0, 0.0, 1.0], "f1": [1.0, 0.0, 1.0, 0.0]})
    return log_small_model(settings, frame, [0, 1, 0, 1]).model_uri


def test_a_job_without_a_token_can_mint_read_forge_register_or_move_nothing(
    platform: EntaiSettings,
) -> None:
    namespace = platform.ray.namespace
    admin_by_name = Principal("admin", frozenset({"admin"}))
    forged_service = f"{SERVICE_PREFIX}{REGISTRY}.{'0' * 64}"
    uri = _logged(platform)
    outcomes = _job(
        namespace,
        [
            (GOVERNANCE, "create_token", (admin_by_name, "admin"), {}),
            (GOVERNANCE, "create_token", ("admin", "admin"), {}),
            (GOVERNANCE, "create_token", (forged_service, "admin"), {}),
            (GOVERNANCE, "set_principal", (admin_by_name, "eve", ["admin"]), {}),
            (GOVERNANCE, "query_audit", (admin_by_name,), {}),
            (GOVERNANCE, "export_audit", ("",), {}),
            (GOVERNANCE, "verify_audit", ("",), {}),
            (GOVERNANCE, "audit", ("", "models:promote", "model:x", "allow"), {}),
            (
                GOVERNANCE,
                "audit",
                (forged_service, "models:promote", "model:x", "allow"),
                {"principal": "approver"},
            ),
            (GOVERNANCE, "snapshot_for_cache", ("",), {}),
            (GOVERNANCE, "record_auth_failures", ("", []), {}),
            (REGISTRY, "register", (uri, MODEL), {"token": "alice"}),
            (REGISTRY, "promote", (MODEL, 1), {"token": ""}),
            (REGISTRY, "rollback", (MODEL,), {"token": admin_by_name}),
            (REGISTRY, "set_alias", (MODEL, "shadow", 1), {"token": "", "reason": "x"}),
        ],
    )
    assert [_refusal(o) for o in outcomes] == ["AuthenticationError"] * len(outcomes)
    # Even an admin's token cannot move champion past the gates.
    admin = platform.security.token_file.read_text().strip()
    (gated,) = _job(
        namespace,
        [(REGISTRY, "set_alias", (MODEL, "champion", 1), {"token": admin, "reason": "skip"})],
    )
    assert _refusal(gated) == "InvalidInputError"
    assert "gated" in gated[2]


def test_with_tokens_a_job_does_exactly_what_its_role_allows(platform: EntaiSettings) -> None:
    namespace = platform.ray.namespace
    engineer = _token(platform, "ml-engineer")  # models:register, no approve, no audit
    approver = _token(platform, "approver")  # models:approve and audit:read
    analyst = _token(platform, "analyst")  # features:read only
    admin = platform.security.token_file.read_text().strip()
    uri = _logged(platform)
    register = {"metrics": {"valid_auc": 0.8}, "card": complete_card(MODEL)}

    by_analyst, v1, by_admin = _job(
        namespace,
        [
            (REGISTRY, "register", (uri, MODEL), {"token": analyst, **register}),
            (REGISTRY, "register", (uri, MODEL), {"token": engineer, **register}),
            (REGISTRY, "register", (uri, MODEL), {"token": admin, **register}),
        ],
    )
    assert _refusal(by_analyst) == "PermissionDeniedError"
    assert v1.tags["entai.registrant"] == "ml-engineer"  # the token's, never a stated name
    assert by_admin.tags["entai.registrant"] == "admin"

    own, engineer_promotes, audit_by_engineer, promoted = _job(
        namespace,
        [
            # admin holds models:approve, but registered this version: four-eyes refuses
            (REGISTRY, "promote", (MODEL, by_admin.version), {"token": admin}),
            (REGISTRY, "promote", (MODEL, v1.version), {"token": engineer}),
            (GOVERNANCE, "query_audit", (engineer,), {}),
            (REGISTRY, "promote", (MODEL, v1.version), {"token": approver, "reason": "ok"}),
        ],
    )
    assert _refusal(own) == "PromotionRejectedError"
    assert "distinct_approver" in own[2]
    assert _refusal(engineer_promotes) == "PermissionDeniedError"
    assert _refusal(audit_by_engineer) == "PermissionDeniedError"
    assert promoted.version == v1.version and "champion" in promoted.aliases

    # A user may audit only in its own name; naming another principal needs a service.
    forged, own_entry, entries, report = _job(
        namespace,
        [
            (
                GOVERNANCE,
                "audit",
                (engineer, "models:promote", "model:x", "allow"),
                {"principal": "approver"},
            ),
            (GOVERNANCE, "audit", (engineer, "note", "model:x", "allow"), {}),
            (GOVERNANCE, "query_audit", (approver,), {"action": "models:promote"}),
            (GOVERNANCE, "verify_audit", (approver,), {}),
        ],
    )
    assert _refusal(forged) == "PermissionDeniedError"
    assert own_entry.principal == "ml-engineer"
    moves = [e for e in entries if e.decision == "allow"]
    assert [(e.principal, e.details["recorded_by"]) for e in moves] == [("approver", REGISTRY)]
    assert report.ok, report.problem
