"""Tokens and a governed model registry for tests that run no platform.

Every writing call of the registry takes the caller's API token and asks governance
who it stands for (:mod:`entai.actors.models`); nothing takes a principal's name. A
:class:`Governed` is one GovernanceChecker over a test's home (the embedded mode
writes the admin token file on first start), tokens minted with that admin token for
the policy's principals (the default policy's ``ml-engineer`` registers, ``approver``
approves: two principals, so the four-eyes gate holds), and registries that present
the registry service's credential, as the platform's registry actor does.

Tests that boot a platform mint their tokens with the running governance actor
instead (``test_serve_http.deploy_platform``). Importable from every tier: the tests
folder is on ``sys.path`` (``tests/conftest.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from entai.actors.core import LocalService
from entai.actors.governance import GovernanceAuditor, GovernanceChecker
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import ModelRegistry
from entai.shared.governance import service_credential
from entai.shared.models import PromotionPolicy
from entai.shared.settings import EntaiSettings, resolve_service_secret

__all__ = ["Governed"]


@dataclass(frozen=True)
class Governed:
    """A local governance service over ``settings``' home and its admin token."""

    settings: EntaiSettings
    governance: LocalService[GovernanceChecker]
    admin: str

    @classmethod
    def over(cls, settings: EntaiSettings) -> Governed:
        """Open (on first use: create) the home's governance state; embedded mode only."""
        checker = GovernanceChecker(settings)
        admin = settings.security.token_file.read_text().strip()
        return cls(settings, LocalService(checker), admin)

    def token(self, principal: str) -> str:
        """A new token of ``principal`` (a principal of the home's policy)."""
        token, _ = self.governance.call(GovernanceChecker.create_token, self.admin, principal)
        return token

    def auditor(self, service: str = REGISTRY) -> GovernanceAuditor:
        """The governance door of the platform service named ``service``."""
        credential = service_credential(resolve_service_secret(self.settings), service)
        return GovernanceAuditor(self.governance, credential)

    def registry(self, *, policy: PromotionPolicy | None = None) -> ModelRegistry:
        """A registry over the home's MLflow store that authenticates through this
        governance service (``policy``: the promotion gates, default ``PromotionPolicy()``)."""
        return ModelRegistry(self.settings.mlflow, self.auditor(), policy=policy)

    def local_registry(
        self, *, policy: PromotionPolicy | None = None
    ) -> LocalService[ModelRegistry]:
        """:meth:`registry` as a service, for pipelines that take one (``run_training``)."""
        return LocalService(self.registry(policy=policy))
