"""The benchmarks' model registry, governed as the platform's.

Every registration and alias move carries the caller's token: an ``ml-engineer``'s
registers, an ``approver``'s promotes (two principals, so the four-eyes gate holds),
and ``champion`` moves only through ``promote``. The gates are otherwise open
(:data:`POLICY`: no metric floor, no model card): the benchmarks measure serving,
scoring and the registry's own latency, not model quality.

``bench/_serving.py``, ``bench/freshness.py``, ``bench/score.py`` and
``bench/train.py`` import it (run as scripts, their folder is on ``sys.path``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from entai.actors.core import LocalService, Service
from entai.actors.governance import GovernanceAuditor, GovernanceChecker
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import ModelRegistry, ModelVersionInfo
from entai.actors.services import governance_here
from entai.shared.governance import service_credential
from entai.shared.models import PromotionPolicy
from entai.shared.settings import EntaiSettings, MlflowSettings, resolve_service_secret

__all__ = ["POLICY", "Governed"]

POLICY = PromotionPolicy(min_metrics={}, require_card=False)
"""Champion gated, four-eyes and not worse than the champion; no floor, no card."""


@dataclass(frozen=True)
class Governed:
    """The registry service's door to governance, and the tokens that register and
    approve (minted with the embedded admin token, valid for a day)."""

    auditor: GovernanceAuditor
    trainer: str
    approver: str

    @classmethod
    def over(cls, settings: EntaiSettings) -> Governed:
        """Through the governance actor running in ``settings``' Ray namespace, or a
        local checker over the home when none runs (one writer either way)."""
        governance = governance_here(settings)
        admin = settings.security.token_file.read_text().strip()
        trainer, approver = (
            governance.call(GovernanceChecker.create_token, admin, principal, 86_400.0)[0]
            for principal in ("ml-engineer", "approver")
        )
        credential = service_credential(resolve_service_secret(settings), REGISTRY)
        return cls(GovernanceAuditor(governance, credential), trainer, approver)

    def registry(self, mlflow: MlflowSettings) -> ModelRegistry:
        """A registry in this process over the MLflow store of ``mlflow``."""
        return ModelRegistry(mlflow, self.auditor, policy=POLICY)

    def champion(
        self, registry: Service[ModelRegistry], model_uri: str, name: str, **register: Any
    ) -> ModelVersionInfo:
        """Register ``model_uri`` as a version of ``name`` (``register``: further
        arguments of :meth:`ModelRegistry.register`) and promote it to champion."""
        info = registry.call(
            ModelRegistry.register, model_uri, name, token=self.trainer, **register
        )
        return registry.call(
            ModelRegistry.promote,
            name,
            info.version,
            "champion",
            token=self.approver,
            reason="benchmark",
        )

    def local_champion(
        self, mlflow: MlflowSettings, model_uri: str, name: str, **register: Any
    ) -> ModelVersionInfo:
        """:meth:`champion` in a registry in this process."""
        return self.champion(LocalService(self.registry(mlflow)), model_uri, name, **register)
