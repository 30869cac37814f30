"""The platform's services, found once: typed handles to the named service actors.

Every entry point (the CLI, the SDK's ``connect()``, a Serve replica, a Ray job, the
retraining worker) builds one :class:`Services` for its settings and hands it, or the
handles it gives, to what it calls. This module is the one place where an actor is
looked up by its name; everything else receives a typed handle
(:class:`~entai.actors.core.ActorService`) and calls methods by reference.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.actor import ActorHandle

from entai.actors.core import ActorService, LocalService, Service, find_actor
from entai.actors.features import FeatureShard, shard_name
from entai.actors.governance import ACTOR_NAME as GOVERNANCE
from entai.actors.governance import GovernanceAuditor, GovernanceChecker
from entai.actors.models import ACTOR_NAME as REGISTRY
from entai.actors.models import ModelRegistry
from entai.actors.monitoring import ACTOR_NAME as DRIFT_MONITOR
from entai.actors.monitoring import DriftMonitor
from entai.shared.core import ServiceUnavailableError
from entai.shared.governance import service_credential
from entai.shared.settings import EntaiSettings, resolve_service_secret

__all__ = [
    "SERVE_SERVICE",
    "Services",
    "governance_here",
    "platform_credential",
    "registry_here",
    "service_governance",
]

log = logging.getLogger(__name__)

SERVE_SERVICE = "entai-serve"
"""The Serve replicas' service name: their credential reports request counts and failed
authentications to governance, writes to the feature shards and calls the drift
monitor (rows served, champions watched, feedback)."""


class Services:
    """Typed handles to the service actors of one platform (one Ray namespace).

    It holds names only (handles are looked up when asked for and kept), so it pickles
    into tasks, actors and Serve replicas.

    Args:
        namespace: The platform's Ray namespace.
        num_shards: How many FeatureShard actors the online store has.
    """

    def __init__(self, namespace: str, *, num_shards: int) -> None:
        self.namespace = namespace
        self.num_shards = num_shards
        self._found: dict[str, ActorHandle[Any]] = {}

    @classmethod
    def of(cls, settings: EntaiSettings) -> Services:
        """The services of the platform ``settings`` describe."""
        return cls(settings.ray.namespace, num_shards=settings.online_store.num_shards)

    def __repr__(self) -> str:
        return f"Services(namespace={self.namespace!r}, num_shards={self.num_shards})"

    def __getstate__(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "num_shards": self.num_shards, "_found": {}}

    def find(self, name: str) -> ActorHandle[Any] | None:
        """The named service actor, or None when Ray is not connected or it does not run."""
        if name in self._found:
            return self._found[name]
        handle = find_actor(name, self.namespace)
        if handle is not None:
            self._found[name] = handle
        return handle

    def names(self, prefix: str) -> list[str]:
        """Names of the running actors of this platform that start with ``prefix``
        (e.g. the stream workers a demo added), sorted."""
        if not ray.is_initialized():
            return []
        found = ray.util.list_named_actors(all_namespaces=True)
        return sorted(
            str(a["name"])
            for a in found
            if a["namespace"] == self.namespace and str(a["name"]).startswith(prefix)
        )

    def _require(self, name: str) -> ActorHandle[Any]:
        handle = self.find(name)
        if handle is None:
            raise ServiceUnavailableError(
                f"the {name} service is not running (start the platform with `entai up`)",
                details={"service": name, "namespace": self.namespace},
            )
        return handle

    def governance(self) -> ActorService[GovernanceChecker]:
        """The GovernanceChecker: tokens, authorization, the audit log.

        Raises:
            ServiceUnavailableError: it is not running (likewise the methods below).
        """
        return ActorService(GOVERNANCE, self._require(GOVERNANCE))

    def registry(self) -> ActorService[ModelRegistry]:
        """The ModelRegistry: versions, lineage, aliases through the gates."""
        return ActorService(REGISTRY, self._require(REGISTRY))

    def drift_monitor(self) -> ActorService[DriftMonitor]:
        """The DriftMonitor: windows, drift, alerts, retrain requests."""
        return ActorService(DRIFT_MONITOR, self._require(DRIFT_MONITOR))

    def drift_monitor_if_running(self) -> ActorService[DriftMonitor] | None:
        """The DriftMonitor, or None when it does not run (serving goes on without it)."""
        handle = self.find(DRIFT_MONITOR)
        return None if handle is None else ActorService(DRIFT_MONITOR, handle)

    def shards(self) -> list[ActorHandle[FeatureShard]]:
        """The online store's FeatureShard actors, in shard order."""
        return [self._require(shard_name(i)) for i in range(self.num_shards)]

    def running_shards(self) -> list[ActorHandle[FeatureShard]]:
        """The FeatureShard actors that run (none without a platform)."""
        found = (self.find(shard_name(i)) for i in range(self.num_shards))
        return [h for h in found if h is not None]


def platform_credential(settings: EntaiSettings, service: str) -> str:
    """The service credential of the platform service ``service`` (signed with the
    service secret of ``settings``): what it presents to the data-plane actors and the
    governance service."""
    return service_credential(resolve_service_secret(settings), service)


def service_governance(settings: EntaiSettings, service: str) -> GovernanceAuditor:
    """The governance door of the platform service named ``service``.

    It authenticates callers and audits through the running governance service (a
    local checker over the same state when no platform runs: one writer either way),
    presenting ``service``'s credential, signed with the service secret.
    """
    credential = platform_credential(settings, service)
    return GovernanceAuditor(governance_here(settings), credential)


def registry_here(settings: EntaiSettings) -> Service[ModelRegistry]:
    """The running registry when this process is connected to a platform, else a local one.

    Going through the running actor wakes the serving replicas that wait on it for
    alias changes at once; without a platform (a script, a test) the registry is an
    instance over the same MLflow store.
    """
    handle = Services.of(settings).find(REGISTRY)
    if handle is not None:
        return ActorService(REGISTRY, handle)
    governance = service_governance(settings, REGISTRY)
    return LocalService(ModelRegistry(settings.mlflow, governance, policy=settings.registry.policy))


def governance_here(settings: EntaiSettings) -> Service[GovernanceChecker]:
    """The running governance service when connected to a platform, else a local one.

    One writer owns the audit log: while the platform runs every change goes through
    its GovernanceChecker actor; without one, a local checker over the home's files.
    """
    handle = Services.of(settings).find(GOVERNANCE)
    if handle is not None:
        return ActorService(GOVERNANCE, handle)
    return LocalService(GovernanceChecker(settings))
