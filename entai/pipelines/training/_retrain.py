"""The retraining workflow: consume RetrainRequests, train, register a challenger.

The DriftMonitor writes each request to ``<lake>/monitoring/retrain_requests/``.
This workflow takes the pending ones oldest first, rebuilds the training set with
fresh labels through the same PIT path as any training run (the config comes from
the drifted version's lineage, see :mod:`entai.pipelines.training._lineage`), trains,
evaluates and registers the result as ``challenger`` with the request and its reason
in the version's lineage. Promotion to ``champion`` goes through the registry's
gates, and only when the request allows it (``auto_promote``); otherwise a person
approves it with ``entai models promote``. Each step is audited and each request is
moved to ``done/`` with its outcome (a registered version, a skip with its reason, or
the error of a failed run), so it is handled once; the monitor asks again later if
the drift persists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from entai.actors.core import Service
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import Auditor
from entai.actors.services import registry_here, service_governance
from entai.pipelines.training._config import TrainConfig
from entai.pipelines.training._run import run_training
from entai.shared.core import PromotionRejectedError
from entai.shared.data import Lake
from entai.shared.governance import service_credential
from entai.shared.settings import EntaiSettings, resolve_service_secret

__all__ = [
    "RETRAIN_PRINCIPAL",
    "ConfigSource",
    "last_runs",
    "pending_requests",
    "process_pending",
    "retrain",
]

log = logging.getLogger(__name__)

RETRAIN_PRINCIPAL = "retrain-workflow"
"""The service that registers retrained versions (their registrant)."""
AUTO_PROMOTE_PRINCIPAL = "retrain-policy"
"""The service that approves a retrained version when its request says ``auto_promote``
(an admin's setting): a principal apart from the registrant, so four-eyes holds."""
_PENDING = ("monitoring", "retrain_requests")

ConfigSource = Callable[[Mapping[str, Any]], TrainConfig]
"""``config_for(request)``: the training config to rerun for a request's model."""


def _audit(auditor: Auditor, action: str, resource: str, details: dict[str, Any]) -> None:
    auditor.audit(action, RETRAIN_PRINCIPAL, resource, "allow", details=details)


def pending_requests(lake: Lake) -> list[dict[str, Any]]:
    """Retrain requests not yet handled, oldest first."""
    requests = lake.list_json(lake.path(*_PENDING))
    return sorted(requests, key=lambda r: str(r.get("created_at", "")))


def last_runs(lake: Lake) -> dict[str, datetime]:
    """When each model's latest retraining run (not a skipped request) was closed."""
    latest: dict[str, datetime] = {}
    for closed in lake.list_json(lake.path(*_PENDING, "done")):
        if "skipped" in closed["outcome"]:
            continue
        model, at = str(closed["request"]["model"]), datetime.fromisoformat(closed["at"])
        latest[model] = max(at, latest.get(model, at))
    return latest


def retrain(
    settings: EntaiSettings,
    request: Mapping[str, Any],
    config: TrainConfig,
    *,
    registry: Service[ModelRegistry] | None = None,
    auditor: Auditor | None = None,
) -> dict[str, Any]:
    """Handle one request: train on fresh data, register a challenger, maybe promote.

    ``registry`` and ``auditor`` default to the running platform's (a local registry
    and log-only auditing without one).
    """
    registry = registry or registry_here(settings)
    auditor = auditor or service_governance(settings, RETRAIN_PRINCIPAL)
    secret = resolve_service_secret(settings)
    model = str(request["model"])
    resource = f"model:{model}"
    _audit(auditor, "retrain:start", resource, {"request": dict(request)})
    dataset_id = config.dataset_id
    if dataset_id is not None:  # saved datasets are immutable: the fresh one needs its own id
        dataset_id = f"{dataset_id}-retrain-{str(request['request_id'])[:12]}"
    run_config = config.model_copy(
        update={
            "alias": "challenger",
            "register_model": True,
            "dataset_id": dataset_id,
        }
    )
    lineage = {
        "entai.retrain_request": str(request["request_id"]),
        "entai.retrain_reason": str(request["reason"]),
        "entai.retrained_from": str(request["version"]),
    }
    result = run_training(
        settings,
        run_config,
        lineage=lineage,
        registry=registry,
        token=service_credential(secret, RETRAIN_PRINCIPAL),
    )
    version = result.get("version")
    outcome: dict[str, Any] = {"request_id": request["request_id"], "model": model, **result}
    if request.get("auto_promote") and version is not None:
        try:
            registry.call(
                ModelRegistry.promote,
                model,
                int(version),
                "champion",
                token=service_credential(secret, AUTO_PROMOTE_PRINCIPAL),
                reason=f"automatic: {request['reason']}",
            )
            outcome["promoted"] = True
        except PromotionRejectedError as exc:
            outcome["promoted"] = False
            outcome["promotion_rejected"] = exc.details
    _audit(
        auditor,
        "retrain:registered",
        resource,
        {"request_id": request["request_id"], "version": version, "reason": request["reason"]},
    )
    return outcome


def _close(lake: Lake, request: Mapping[str, Any], outcome: Mapping[str, Any]) -> None:
    request_id = request["request_id"]
    done = lake.path(*_PENDING, "done", f"{request_id}.json")
    finished = datetime.now(UTC).isoformat()
    lake.write_json(done, {"request": dict(request), "outcome": dict(outcome), "at": finished})
    lake.fs.delete_file(lake.path(*_PENDING, f"{request_id}.json"))


def process_pending(
    settings: EntaiSettings,
    config_for: ConfigSource,
    *,
    skip_reason: Callable[[Mapping[str, Any]], str | None] = lambda request: None,
    registry: Service[ModelRegistry] | None = None,
    auditor: Auditor | None = None,
) -> list[dict[str, Any]]:
    """Handle every pending request; each moves to ``done/`` with its outcome.

    Args:
        settings: Lake, MLflow, Ray settings.
        config_for: The training config for a request.
        skip_reason: Why a request must not run now (e.g. a rate limit), or None.
            A skipped request is closed and audited as ``retrain:skipped``.
        registry: Where challengers are registered; default: the running platform's.
        auditor: Where the workflow's events are audited; default: the platform's.

    A request whose run fails is closed with the error and audited as
    ``retrain:failed``; the others still run.
    """
    lake = Lake(settings.lake.root)
    registry = registry or registry_here(settings)
    auditor = auditor or service_governance(settings, RETRAIN_PRINCIPAL)
    outcomes = []
    for request in pending_requests(lake):
        resource = f"model:{request['model']}"
        why_not = skip_reason(request)
        if why_not is not None:
            outcome: dict[str, Any] = {"request_id": request["request_id"], "skipped": why_not}
            _audit(auditor, "retrain:skipped", resource, outcome)
        else:
            try:
                outcome = retrain(
                    settings, request, config_for(request), registry=registry, auditor=auditor
                )
            except Exception as exc:
                log.exception("retraining failed", extra={"request_id": request["request_id"]})
                outcome = {"request_id": request["request_id"], "error": repr(exc)}
                _audit(auditor, "retrain:failed", resource, outcome)
        _close(lake, request, outcome)
        outcomes.append(outcome)
    return outcomes
