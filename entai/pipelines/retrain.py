"""The retraining workflow: consume RetrainRequests, train, register a challenger.

The DriftMonitor writes each request to ``<lake>/monitoring/retrain_requests/``.
This workflow takes the pending ones oldest first, rebuilds the training set with
fresh labels through the same PIT path as any training run, trains, evaluates and
registers the result as ``challenger``. Promotion to ``champion`` goes through the
registry's gates, and only when the request allows it (``auto_promote``); otherwise a
person approves it with ``entai models promote``. Each step is audited and each
request is moved to ``done/`` with its outcome, so it is handled once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from entai.actors.audit_forwarder import GovernanceAuditor
from entai.pipelines.run_training import registry_call, run_training
from entai.pipelines.train_config import TrainConfig
from entai.shared.errors import PromotionRejectedError
from entai.shared.lake import Lake
from entai.shared.settings import EntaiSettings

__all__ = ["RETRAIN_PRINCIPAL", "pending_requests", "process_pending", "retrain"]

log = logging.getLogger(__name__)

RETRAIN_PRINCIPAL = "retrain-workflow"
_PENDING = ("monitoring", "retrain_requests")


def _audit(settings: EntaiSettings, action: str, resource: str, details: dict[str, Any]) -> None:
    GovernanceAuditor(settings.ray.namespace).audit(
        action, RETRAIN_PRINCIPAL, resource, "allow", details=details
    )


def pending_requests(lake: Lake) -> list[dict[str, Any]]:
    """Retrain requests not yet handled, oldest first."""
    from pyarrow.fs import FileSelector, FileType

    directory = lake.path(*_PENDING)
    if not lake.exists(directory):
        return []
    infos = lake.fs.get_file_info(FileSelector(directory, recursive=False))
    requests = [
        lake.read_json(info.path)
        for info in infos
        if info.type == FileType.File and info.path.endswith(".json")
    ]
    return sorted(requests, key=lambda r: str(r.get("created_at", "")))


def retrain(
    settings: EntaiSettings, request: dict[str, Any], config: TrainConfig
) -> dict[str, Any]:
    """Handle one request: train on fresh data, register a challenger, maybe promote."""
    model = str(request["model"])
    resource = f"model:{model}"
    _audit(settings, "retrain:start", resource, {"request": request})
    run_config = config.model_copy(
        update={"alias": "challenger", "registrant": RETRAIN_PRINCIPAL, "register_model": True}
    )
    result = run_training(settings, run_config)
    version = result.get("version")
    outcome: dict[str, Any] = {"request_id": request["request_id"], "model": model, **result}
    if request.get("auto_promote") and version is not None:
        try:
            registry_call(
                settings,
                "promote",
                model,
                int(version),
                "champion",
                approver="retrain-policy",
                reason=f"automatic: {request['reason']}",
            )
            outcome["promoted"] = True
        except PromotionRejectedError as exc:
            outcome["promoted"] = False
            outcome["promotion_rejected"] = exc.details
    _audit(
        settings,
        "retrain:registered",
        resource,
        {"request_id": request["request_id"], "version": version, "reason": request["reason"]},
    )
    return outcome


def process_pending(
    settings: EntaiSettings, config_for: Callable[[str], TrainConfig]
) -> list[dict[str, Any]]:
    """Handle every pending request; each moves to ``done/`` with its outcome."""
    lake = Lake(settings.lake.root)
    outcomes = []
    for request in pending_requests(lake):
        outcome = retrain(settings, request, config_for(str(request["model"])))
        done = lake.path(*_PENDING, "done", f"{request['request_id']}.json")
        lake.write_json(done, {"request": request, "outcome": outcome})
        lake.fs.delete_file(lake.path(*_PENDING, f"{request['request_id']}.json"))
        outcomes.append(outcome)
    return outcomes
