"""ModelRegistry: the single front for MLflow's model registry.

Versions carry lineage as tags (registrant, dataset manifest id, feature service,
definitions hash, git commit, metrics, validation dataset id) and a model card stored
as an artifact. Aliases (``champion``, ``challenger``, ``shadow``; no MLflow stages)
name what serves. Gated aliases (``champion``) move only through
:meth:`ModelRegistry.promote`, which runs
:func:`entai.shared.models._promotion.check_promotion`, and :meth:`rollback`, which
moves an alias back to its previous holder; :meth:`set_alias` moves the others. Every
move is appended to the model's alias history (one registered-model tag per entry, so
no tag grows without bound) with who, when and why, and is audited.

Who acts is never a name the caller states: every writing method takes the caller's
API token (or a platform service's credential), and the governance service answers
with the principal when it holds the permission (``models:register`` to register, set
a card or record an evaluation; ``models:approve`` to move an alias). The registrant
of a version is its registering token's principal; a promotion's approver is the
promoting token's, and the gates refuse it when it is the registrant's.

All state is MLflow's, so a restarted actor loses nothing: the revision that
subscribers track is the length of the alias history. Subscribers (Serve replicas)
block in :meth:`wait_for_change` on the actor instead of polling MLflow; the actor is
threaded, with long polls in their own concurrency group so they never hold up
registrations and promotions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ray

from entai.actors.backends import configure_mlflow, load_card, store_card
from entai.actors.bus import PlatformEvents
from entai.actors.governance import Auditor
from entai.actors.models._registry_tags import (
    ALIASES,
    CARD_TAG,
    EVALUATIONS_TAG,
    HISTORY_PREFIX,
    METRICS_TAG,
    REGISTRANT_TAG,
    VALID_ID_TAG,
    ModelVersionInfo,
    alias_history_of,
    aliases_by_version,
    check_alias,
    version_info,
)
from entai.shared.core import ConflictError, InvalidInputError, NotFoundError
from entai.shared.data import alias_moved
from entai.shared.models import Candidate, ModelCard, PromotionPolicy, check_promotion
from entai.shared.settings import MlflowSettings

__all__ = [
    "ACTOR_NAME",
    "ALIASES",
    "ModelRegistry",
    "ModelRegistryActor",
    "ModelVersionInfo",
    "start_registry",
]

log = logging.getLogger(__name__)

ACTOR_NAME = "entai-model-registry"
_WATCH_GROUP = "watch"
_REGISTER = "models:register"
_APPROVE = "models:approve"


class ModelRegistry:
    """Registers versions with lineage, gates promotions, moves and rolls back aliases.

    Args:
        settings: Where MLflow's tracking and registry store lives.
        governance: Authenticates every writing call's token and audits every
            registration and alias change.
        policy: The promotion gates (defaults: ``PromotionPolicy()``).
        events: Announces every alias move on the bus (``entai-alias-moved``), after
            the move is recorded and audited; None announces nothing.
    """

    def __init__(
        self,
        settings: MlflowSettings,
        governance: Auditor,
        *,
        policy: PromotionPolicy | None = None,
        events: PlatformEvents | None = None,
    ) -> None:
        self._client = configure_mlflow(settings)
        self._experiment = settings.experiment
        self.policy = policy or PromotionPolicy()
        self._governance = governance
        self._events = events
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._revisions: dict[str, int] = {}

    # -- versions -----------------------------------------------------------------

    def register(
        self,
        model_uri: str,
        name: str,
        *,
        token: str,
        lineage: Mapping[str, str] | None = None,
        run_id: str | None = None,
        metrics: Mapping[str, float] | None = None,
        validation_dataset_id: str | None = None,
        card: ModelCard | None = None,
        request_id: str | None = None,
    ) -> ModelVersionInfo:
        """Create a new version of ``name`` from a logged model URI.

        Args:
            model_uri: The logged model (``models:/m-...`` or ``runs:/...``).
            name: Registered model name; created on first use.
            token: The registering caller's token (``models:register`` on
                ``model:<name>``); its principal is the registrant, who may not
                approve the version's promotion.
            lineage: Extra tags: dataset manifest id, feature service, definitions
                hash, git commit.
            run_id: The training run; its metrics are used when ``metrics`` is None.
            metrics: Validation metrics the promotion gates check.
            validation_dataset_id: Id of the dataset ``metrics`` were computed on.
            card: The model card, stored as an artifact.
            request_id: Carried into the audit entry.
        """
        from mlflow.exceptions import MlflowException

        registrant = self._governance.principal_for(token, _REGISTER, f"model:{name}", request_id)
        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)
        if metrics is None and run_id is not None:
            metrics = self._client.get_run(run_id).data.metrics
        tags = {
            **dict(lineage or {}),
            REGISTRANT_TAG: registrant,
            METRICS_TAG: json.dumps({k: float(v) for k, v in (metrics or {}).items()}),
        }
        if validation_dataset_id:
            tags[VALID_ID_TAG] = validation_dataset_id
        mv = self._client.create_model_version(
            name=name, source=model_uri, run_id=run_id, tags=tags
        )
        version = int(mv.version)
        if card is not None:
            self._store_card(name, version, run_id, card)
        self._emit(
            "models:register",
            registrant,
            f"{name}/{version}",
            "allow",
            request_id=request_id,
            details={"lineage": tags},
        )
        log.info("registered model version", extra={"model": name, "version": version})
        return self.version(name, version)

    def version(self, name: str, version: int) -> ModelVersionInfo:
        """Look up one version; NotFoundError when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise NotFoundError(
                f"model {name!r} has no version {version}",
                details={"model": name, "version": version},
            ) from exc
        return version_info(mv)

    def versions(self, name: str) -> list[ModelVersionInfo]:
        """Every version of ``name``, oldest first, each with the aliases it holds."""
        held = aliases_by_version(self._registered(name))
        quoted = name.replace("'", "\\'")
        found = self._client.search_model_versions(f"name = '{quoted}'")
        infos = (version_info(mv, held.get(int(mv.version), ())) for mv in found)
        return sorted(infos, key=lambda info: info.version)

    def resolve(self, name: str, alias: str) -> ModelVersionInfo:
        """The version that holds ``alias`` now."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise NotFoundError(
                f"model {name!r} has no version with alias {alias!r}",
                details={"model": name, "alias": alias},
            ) from exc
        return version_info(mv)

    def list_models(self) -> list[dict[str, Any]]:
        """Registered models with their aliases and latest version."""
        out = []
        for rm in self._client.search_registered_models():
            out.append(
                {
                    "name": rm.name,
                    "aliases": {alias: int(v) for alias, v in (rm.aliases or {}).items()},
                    "latest_version": max(
                        (int(v.version) for v in rm.latest_versions or []), default=None
                    ),
                }
            )
        return out

    # -- cards and evaluations ----------------------------------------------------

    def set_card(
        self,
        name: str,
        version: int,
        card: ModelCard,
        *,
        token: str,
        request_id: str | None = None,
    ) -> ModelVersionInfo:
        """Store (or replace) the model card of a version (``models:register``)."""
        by = self._governance.principal_for(token, _REGISTER, f"model:{name}", request_id)
        info = self.version(name, version)
        self._store_card(name, version, info.run_id, card)
        details = {"complete": card.complete, "missing": card.missing()}
        self._emit(
            "models:card", by, f"{name}/{version}", "allow", request_id=request_id, details=details
        )
        return self.version(name, version)

    def card(self, name: str, version: int) -> ModelCard:
        """The stored model card of a version; NotFoundError when it has none."""
        uri = self.version(name, version).tags.get(CARD_TAG)
        if not uri:
            raise NotFoundError(
                f"model {name!r} version {version} has no model card",
                details={"model": name, "version": version},
            )
        return load_card(uri)

    def record_evaluation(
        self,
        name: str,
        version: int,
        dataset_id: str,
        metrics: Mapping[str, float],
        *,
        token: str,
    ) -> ModelVersionInfo:
        """Record ``version``'s metrics on an evaluation dataset, for like-for-like gates.

        The caller computes the metrics (the training pipeline's evaluator, which
        loads the model where CPU is available); the registry stores them under
        ``dataset_id`` so champion and challenger can be compared on the same rows.
        Needs ``models:register`` on the model.
        """
        by = self._governance.principal_for(token, _REGISTER, f"model:{name}")
        if not dataset_id:
            raise InvalidInputError("dataset_id must be given", details={"field": "dataset_id"})
        info = self.version(name, version)
        evaluations = json.loads(info.tags.get(EVALUATIONS_TAG, "{}"))
        evaluations[dataset_id] = {k: float(v) for k, v in metrics.items()}
        self._client.set_model_version_tag(
            name, str(version), EVALUATIONS_TAG, json.dumps(evaluations)
        )
        log.info(
            "evaluation recorded",
            extra={"model": name, "version": version, "dataset_id": dataset_id, "by": by},
        )
        return self.version(name, version)

    # -- aliases ------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        token: str,
        reason: str,
        request_id: str | None = None,
    ) -> ModelVersionInfo:
        """Point an ungated alias (``shadow``, ``challenger``) at ``version``, recording
        who (``models:register``: what a registrant may do with its own version) and
        why.

        Raises:
            InvalidInputError: for a gated alias (``champion``): it moves only through
                :meth:`promote`, or back through :meth:`rollback`.
        """
        check_alias(alias)
        if alias in self.policy.gated_aliases:
            raise InvalidInputError(
                f"alias {alias!r} is gated: it moves only through `promote` (the gates) "
                "or back through `rollback`",
                details={"field": "alias", "alias": alias},
            )
        by = self._governance.principal_for(token, _REGISTER, f"model:{name}", request_id)
        self.version(name, version)
        return self._move(name, alias, version, by=by, reason=reason, kind="set", rid=request_id)

    def promote(
        self,
        name: str,
        version: int,
        alias: str = "champion",
        *,
        token: str,
        reason: str = "",
        request_id: str | None = None,
    ) -> ModelVersionInfo:
        """Give ``alias`` to ``version`` if every gate of the policy passes.

        The approver is ``token``'s principal (``models:approve`` on the model); the
        distinct-approver gate refuses it when it registered the version.

        Raises:
            AuthenticationError / PermissionDeniedError: for the token.
            PromotionRejectedError: listing every failed gate with its reason (audited).
            NotFoundError: unknown model or version.
        """
        check_alias(alias)
        approver = self._governance.principal_for(token, _APPROVE, f"model:{name}", request_id)
        candidate = self._candidate(name, version)
        holder = self._holder(name, alias)
        incumbent = None if holder is None else self._candidate(name, holder)
        verdict = check_promotion(
            self.policy, alias=alias, candidate=candidate, incumbent=incumbent, approver=approver
        )
        resource = f"{name}/{version}"
        details = {**verdict.details(), "reason": reason, "previous": holder}
        if not verdict.approved:
            self._emit(
                "models:promote",
                approver,
                resource,
                "deny",
                request_id=request_id,
                details=details,
            )
            verdict.raise_if_rejected(name)
        return self._move(
            name,
            alias,
            version,
            by=approver,
            reason=reason,
            kind="promote",
            rid=request_id,
            details=details,
        )

    def rollback(
        self,
        name: str,
        alias: str = "champion",
        *,
        token: str,
        reason: str = "",
        request_id: str | None = None,
    ) -> ModelVersionInfo:
        """Move ``alias`` back to the version that held it before the current holder
        (``models:approve``; audited like every move).

        Repeated rollbacks walk further back (each undoes one earlier move).

        Raises:
            ConflictError: the alias has no earlier holder to return to.
        """
        check_alias(alias)
        by = self._governance.principal_for(token, _APPROVE, f"model:{name}", request_id)
        holders: list[int] = []
        for entry in self.alias_history(name):
            if entry["alias"] != alias:
                continue
            if entry.get("kind") == "rollback":
                holders.pop()
            else:
                holders.append(int(entry["version"]))
        if len(holders) < 2:
            raise ConflictError(
                f"alias {alias!r} of model {name!r} has no previous holder to roll back to",
                details={"model": name, "alias": alias, "holders": holders},
            )
        return self._move(
            name, alias, holders[-2], by=by, reason=reason, kind="rollback", rid=request_id
        )

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of ``name``, oldest first."""
        return alias_history_of(self._registered(name))

    # -- change notification ------------------------------------------------------

    def subscribe(self, name: str) -> dict[str, Any]:
        """The current alias map and revision: ``{"name", "revision", "aliases"}``."""
        rm = self._registered(name)
        revision = len(alias_history_of(rm))
        with self._changed:
            self._revisions[name] = max(revision, self._revisions.get(name, 0))
        aliases = {alias: int(v) for alias, v in (rm.aliases or {}).items()}
        return {"name": name, "revision": revision, "aliases": aliases}

    @ray.method(concurrency_group=_WATCH_GROUP)
    def wait_for_change(
        self, name: str, known_revision: int, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Block until ``name``'s aliases move past ``known_revision`` or time runs out.

        Returns the same map as :meth:`subscribe`; an unchanged ``revision`` means the
        wait timed out. MLflow is read once at the start and once at the end, so moves
        made outside this actor are seen at the latest after ``timeout_s``.
        """
        current = self._revisions.get(name)
        if current is None:
            current = int(self.subscribe(name)["revision"])
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while self._revisions.get(name, current) == known_revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        return self.subscribe(name)

    # -- internals ----------------------------------------------------------------

    def _move(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        by: str,
        reason: str,
        kind: str,
        rid: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> ModelVersionInfo:
        with self._lock:
            previous = self._holder(name, alias)
            self._client.set_registered_model_alias(name, alias, str(version))
            revision = len(self.alias_history(name)) + 1
            entry = {
                "alias": alias,
                "version": version,
                "previous": previous,
                "kind": kind,
                "by": by,
                "reason": reason,
                "at": datetime.now(UTC).isoformat(),
            }
            key = f"{HISTORY_PREFIX}{revision:06d}"
            self._client.set_registered_model_tag(name, key, json.dumps(entry))
        with self._changed:
            self._revisions[name] = revision
            self._changed.notify_all()
        audit = {**dict(details or {}), **entry}
        self._emit(f"models:{kind}", by, f"{name}@{alias}", "allow", request_id=rid, details=audit)
        log.info("alias moved", extra={"model": name, "alias": alias, "version": version})
        if self._events is not None:
            moved = alias_moved(name, alias, version, previous, revision=revision, kind=kind)
            self._events.publish([moved])
        return self.version(name, version)

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_registered_model(name)
        except MlflowException as exc:
            raise NotFoundError(f"no registered model {name!r}", details={"model": name}) from exc

    def _holder(self, name: str, alias: str) -> int | None:
        try:
            return self.resolve(name, alias).version
        except NotFoundError:
            return None

    def _candidate(self, name: str, version: int) -> Candidate:
        info = self.version(name, version)
        card = self.card(name, version) if CARD_TAG in info.tags else None
        return Candidate(
            version=version,
            registrant=info.tags.get(REGISTRANT_TAG, ""),
            metrics=info.metrics,
            validation_dataset_id=info.tags.get(VALID_ID_TAG),
            evaluations=json.loads(info.tags.get(EVALUATIONS_TAG, "{}")),
            card=card,
        )

    def _store_card(self, name: str, version: int, run_id: str | None, card: ModelCard) -> None:
        if card.model_name != name:
            raise InvalidInputError(
                f"model card is for {card.model_name!r}, not {name!r}",
                details={"field": "card.model_name"},
            )
        uri = store_card(
            self._client, card, experiment=self._experiment, version=version, run_id=run_id
        )
        self._client.set_model_version_tag(name, str(version), CARD_TAG, uri)

    def _emit(
        self,
        action: str,
        principal: str,
        resource: str,
        decision: str,
        *,
        request_id: str | None,
        details: Mapping[str, Any],
    ) -> None:
        self._governance.audit(
            action, principal, resource, decision, details=dict(details), request_id=request_id
        )


# Threaded actor: registrations and alias moves share a small default pool (writes are
# serialised by a lock); long polls get their own group so they never block writes.
ModelRegistryActor = ray.remote(  # type: ignore[call-overload]
    max_concurrency=4, concurrency_groups={_WATCH_GROUP: 64}
)(ModelRegistry)


def start_registry(
    settings: MlflowSettings,
    namespace: str,
    governance: Auditor,
    *,
    policy: PromotionPolicy | None = None,
    events: PlatformEvents | None = None,
) -> Any:
    """Create (or find) the named, detached ModelRegistry actor, authenticating and
    auditing through ``governance`` and announcing alias moves on ``events``."""
    from entai.actors.core import service_actor

    return service_actor(
        ModelRegistryActor,
        ACTOR_NAME,
        namespace,
        settings,
        governance,
        policy=policy,
        events=events,
    )
