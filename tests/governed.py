"""Governance for tests that call the authenticated API: a real GovernanceChecker over
a test home, tokens of the default policy's principals, and services (a registry, an
auditor) whose every writing call it authenticates and audits.

The default policy's principals are named like their roles: ``ml-engineer`` may
register models, ``approver`` may approve them and read the audit log, ``app`` may only
predict (:meth:`entai.shared.governance.Policy.default`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entai.actors.core import LocalService
from entai.actors.governance import GovernanceAuditor, GovernanceChecker
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import ModelRegistry
from entai.shared.governance import AuditEntry, service_credential
from entai.shared.models import ModelCard, PromotionPolicy, TrainingDataSummary
from entai.shared.settings import EntaiSettings, MlflowSettings, resolve_service_secret

if TYPE_CHECKING:
    from entai.actors.models import ModelVersionInfo
    from entai.pipelines.training import LoggedRun

__all__ = ["Governed", "complete_card"]


def complete_card(name: str, **update: Any) -> ModelCard:
    """A model card with every required section filled (the card gate passes)."""
    card = ModelCard(
        model_name=name,
        intended_use="Rank users for a weekly email.",
        training_data=TrainingDataSummary(dataset_id="ts-1", feature_service="fs", rows=100),
        metrics={"valid_auc": 0.8},
        limitations=("Untested on new markets.",),
        owners=("ml-team",),
    )
    return card.model_copy(update=update)


class Governed:
    """A checker over ``settings``' home (embedded: it mints the admin token file).

    Args:
        settings: The test's settings (a tmp home; the audit log under its lake).
    """

    def __init__(self, settings: EntaiSettings) -> None:
        self.settings = settings
        self.checker = GovernanceChecker(settings)
        self.admin = settings.security.token_file.read_text().strip()
        self._tokens: dict[str, str] = {}

    def token(self, principal: str) -> str:
        """A token of ``principal`` (one per principal, minted with the admin token)."""
        if principal not in self._tokens:
            self._tokens[principal], _ = self.checker.create_token(self.admin, principal)
        return self._tokens[principal]

    def service(self, name: str = REGISTRY) -> GovernanceAuditor:
        """The governance door of the platform service ``name`` (its own credential)."""
        secret = resolve_service_secret(self.settings)
        return GovernanceAuditor(LocalService(self.checker), service_credential(secret, name))

    def registry(
        self,
        mlflow: MlflowSettings | None = None,
        *,
        policy: PromotionPolicy | None = None,
        events: Any = None,
    ) -> ModelRegistry:
        """A registry over ``mlflow`` (default: the settings') authenticating through
        this checker."""
        return ModelRegistry(
            mlflow or self.settings.mlflow, self.service(), policy=policy, events=events
        )

    def register_logged(
        self, logged: LoggedRun, name: str, *, registry: ModelRegistry | None = None
    ) -> ModelVersionInfo:
        """Register a logged run (:func:`logged_models.log_small_model`) as a new version
        of ``name``, by an ml-engineer, with what the promotion gates check: a validation
        AUC of 0.9 on dataset ``v1`` and a complete card.

        Args:
            registry: The registry to register with (default: a new :meth:`registry`).
        """
        return (registry or self.registry()).register(
            logged.model_uri,
            name,
            token=self.token("ml-engineer"),
            run_id=logged.run_id,
            metrics={"valid_auc": 0.9},
            validation_dataset_id="v1",
            card=complete_card(name),
        )

    def audited(self, **query: Any) -> list[AuditEntry]:
        """The audit log's entries matching ``query`` (read with the admin token)."""
        return self.checker.query_audit(self.admin, **query)
