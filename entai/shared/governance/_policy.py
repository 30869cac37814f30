"""Governance policy: permissions, roles, principals and authorization decisions.

A :class:`Policy` maps roles to :class:`Permission` sets and principals to roles. It
lives in a versioned YAML file::

    version: 3
    pii_mode: mask            # or "refuse"
    restricted_pii: [identifier, sensitive]
    roles:
      analyst: [features:read]
      fraud-app:
        - predict: ["model:fraud_*"]           # only on these resources
        - events:write: [source:clickstream]
        - features:read: ["view:user_*"]
        - features:read_pii: ["feature:user_*:*"]
    principals:
      alice: {roles: [analyst]}

``admin`` implies every permission on every resource. A permission listed plainly
holds on every resource; one listed with patterns holds only on resources matching
one of them (shell-style: ``*``, ``?``, ``[...]``). Resources name a kind and an
object: ``model:<name>``, ``source:<source>``, ``view:<view>``,
``feature:<view>:<feature>``, ``subject:<digest>``. A resource without a kind
(``models``, ``features``, ``audit``) is the service as a whole: a scoped grant
admits the caller to it, and each object it then touches is checked on its own (a
feature read checks every view read and, for restricted PII, every feature).

Feature-level rules come from each field's PII class: a principal without
``features:read_pii`` gets the restricted classes masked (``pii_mode: mask``) or the
whole read refused (``pii_mode: refuse``). PII classes are compared by value, so
``PiiClass`` members and plain strings both work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from entai.shared.core import ConfigError, InvalidInputError, PermissionDeniedError

__all__ = [
    "KNOWN_PII_CLASSES",
    "SERVICE_PERMISSIONS",
    "SERVICE_ROLE",
    "Decision",
    "Permission",
    "Policy",
    "Principal",
    "Scopes",
    "normalise_pii_class",
]

KNOWN_PII_CLASSES = frozenset({"none", "identifier", "quasi_identifier", "sensitive", "free_text"})


class Permission(StrEnum):
    """One thing a principal may do. ``ADMIN`` implies all of them."""

    FEATURES_READ = "features:read"
    FEATURES_READ_PII = "features:read_pii"
    FEATURES_WRITE = "features:write"
    EVENTS_WRITE = "events:write"
    PREDICT = "predict"
    MODELS_REGISTER = "models:register"
    MODELS_APPROVE = "models:approve"
    GOVERNANCE_ERASE = "governance:erase"
    AUDIT_READ = "audit:read"
    AUDIT_WRITE = "audit:write"
    ADMIN = "admin"


_ALL_PERMISSIONS = frozenset(Permission)

SERVICE_ROLE = "entai-service"
"""The built-in role of the platform's own services (see ``_service_credentials``);
reserved: no policy file defines it or gives it to a principal."""
SERVICE_PERMISSIONS = frozenset(
    {Permission.AUDIT_WRITE, Permission.MODELS_REGISTER, Permission.MODELS_APPROVE}
)
"""What a service may do: record audit entries on a user's behalf, register a retrained
version and approve it when the retraining request says ``auto_promote`` (as a
principal of its own, so four-eyes still holds: registrant and approver differ)."""


@dataclass(frozen=True)
class Principal:
    """A user or service account, identified by name, holding roles."""

    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Decision:
    """The outcome of one authorization check.

    Attributes:
        allowed: Whether the action may proceed.
        reason: Why, in words; never contains a secret.
        masked_features: Features the caller must mask before returning values.
    """

    allowed: bool
    principal: str
    action: str
    resource: str
    reason: str
    masked_features: tuple[str, ...] = ()

    def raise_if_denied(self) -> Decision:
        """Return self when allowed.

        Raises:
            PermissionDeniedError: when the decision is a denial.
        """
        if not self.allowed:
            raise PermissionDeniedError(
                f"principal {self.principal!r} may not {self.action} on {self.resource!r}: "
                f"{self.reason}",
                details={
                    "principal": self.principal,
                    "action": self.action,
                    "resource": self.resource,
                    "reason": self.reason,
                },
            )
        return self


def normalise_pii_class(value: object, *, feature: str = "?") -> str:
    """The canonical PII class name of an enum member or string (``quasi-identifier`` ok).

    Raises:
        InvalidInputError: for an unknown class (unknown data fails closed).
    """
    raw = getattr(value, "value", value)
    name = str(raw).strip().lower().replace("-", "_")
    if name not in KNOWN_PII_CLASSES:
        raise InvalidInputError(
            f"feature {feature!r} has unknown PII class {raw!r}",
            details={"field": feature, "pii_class": str(raw), "known": sorted(KNOWN_PII_CLASSES)},
        )
    return name


Scopes = Mapping[str, Mapping["Permission", tuple[str, ...]]]
"""Per role, the permissions it grants only on some resources, with their patterns."""


def covers(patterns: tuple[str, ...], resource: str) -> bool:
    """Whether a grant limited to ``patterns`` holds on ``resource``.

    A resource without a kind (no ``:``) is a whole service: a scoped grant admits to
    it, and the objects inside are checked one by one by the caller.
    """
    if ":" not in resource and resource != "*":
        return True
    return any(fnmatchcase(resource, pattern) for pattern in patterns)


class _PrincipalDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(default_factory=list)


class _PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1)
    pii_mode: Literal["mask", "refuse"] = "mask"
    restricted_pii: list[str] = Field(default_factory=lambda: ["identifier", "sensitive"])
    roles: dict[str, list[Permission | dict[Permission, list[str]]]]
    principals: dict[str, _PrincipalDoc] = Field(default_factory=dict)

    def grants(
        self,
    ) -> tuple[dict[str, frozenset[Permission]], dict[str, dict[Permission, tuple[str, ...]]]]:
        """Each role's permissions, and the patterns of those it grants with a scope."""
        roles: dict[str, frozenset[Permission]] = {}
        scopes: dict[str, dict[Permission, tuple[str, ...]]] = {}
        for name, entries in self.roles.items():
            permissions: set[Permission] = set()
            for entry in entries:
                if isinstance(entry, Permission):
                    permissions.add(entry)
                    continue
                for permission, patterns in entry.items():
                    if not patterns:
                        raise ConfigError(
                            f"role {name!r} grants {permission.value} on no resource",
                            details={"field": f"roles.{name}", "permission": permission.value},
                        )
                    permissions.add(permission)
                    scopes.setdefault(name, {})[permission] = tuple(patterns)
            roles[name] = frozenset(permissions)
        return roles, scopes


_DEFAULT_ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset({Permission.ADMIN}),
    "data-scientist": frozenset(
        {
            Permission.FEATURES_READ,
            Permission.FEATURES_READ_PII,
            Permission.FEATURES_WRITE,
            Permission.MODELS_REGISTER,
            Permission.PREDICT,
        }
    ),
    "ml-engineer": frozenset(
        {
            Permission.FEATURES_READ,
            Permission.FEATURES_WRITE,
            Permission.EVENTS_WRITE,
            Permission.MODELS_REGISTER,
            Permission.PREDICT,
        }
    ),
    "approver": frozenset({Permission.MODELS_APPROVE, Permission.AUDIT_READ}),
    "app": frozenset({Permission.PREDICT}),
    "analyst": frozenset({Permission.FEATURES_READ}),
}


@dataclass(frozen=True)
class Policy:
    """Roles, principals and PII rules; immutable, changed by building a new version.

    Attributes:
        version: Increases with every change; caches compare it.
        pii_mode: What a read of restricted PII features without ``features:read_pii``
            does: ``mask`` allows it with those features listed as masked, ``refuse``
            denies it naming them.
        restricted_pii: PII classes that need ``features:read_pii``.
    """

    version: int
    roles: Mapping[str, frozenset[Permission]]
    principals: Mapping[str, Principal]
    pii_mode: Literal["mask", "refuse"] = "mask"
    restricted_pii: frozenset[str] = field(
        default_factory=lambda: frozenset({"identifier", "sensitive"})
    )
    scopes: Scopes = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "principals", MappingProxyType(dict(self.principals)))
        object.__setattr__(
            self,
            "scopes",
            MappingProxyType({r: MappingProxyType(dict(g)) for r, g in self.scopes.items()}),
        )
        for role, scoped in self.scopes.items():
            stray = sorted(p.value for p in scoped if p not in self.roles.get(role, frozenset()))
            if stray:
                raise ConfigError(
                    f"role {role!r} scopes permission(s) {stray} it does not grant",
                    details={"field": f"roles.{role}", "permissions": stray},
                )
        if SERVICE_ROLE in self.roles:
            raise ConfigError(
                f"role {SERVICE_ROLE!r} is reserved for the platform's services",
                details={"field": f"roles.{SERVICE_ROLE}"},
            )
        for principal in self.principals.values():
            unknown = sorted(principal.roles - set(self.roles))
            if unknown:
                raise ConfigError(
                    f"principal {principal.name!r} has undefined role(s) {unknown}",
                    details={"field": f"principals.{principal.name}.roles", "roles": unknown},
                )
        for pii in self.restricted_pii:
            normalise_pii_class(pii, feature="restricted_pii")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Policy,
            (
                self.version,
                dict(self.roles),
                dict(self.principals),
                self.pii_mode,
                self.restricted_pii,
                {r: dict(g) for r, g in self.scopes.items()},
            ),
        )

    @classmethod
    def default(cls) -> Policy:
        """The embedded default: one role per job and a principal of each role's name."""
        principals = {name: Principal(name, frozenset({name})) for name in _DEFAULT_ROLES}
        return cls(version=1, roles=_DEFAULT_ROLES, principals=principals)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        """Load a policy file.

        Raises:
            ConfigError: when the file is missing, not YAML or not a valid policy.
        """
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"policy file {file} cannot be read: {exc.strerror}",
                details={"field": "security.policy_file", "path": str(file)},
            ) from exc
        return cls.from_yaml_text(text, f"policy file {file}", {"path": str(file)})

    @classmethod
    def from_yaml_text(
        cls, text: str, where: str, context: Mapping[str, Any] | None = None
    ) -> Policy:
        """Parse a policy document; ``where`` names its origin in errors.

        Raises:
            ConfigError: when the text is not YAML or not a valid policy.
        """
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{where} is not valid YAML: {exc}", details=dict(context or {})
            ) from exc
        try:
            doc = _PolicyDoc.model_validate(raw)
        except ValidationError as exc:
            problems = [{"field": _field_of(e["loc"]), "message": e["msg"]} for e in exc.errors()]
            raise ConfigError(
                f"{where} is invalid: "
                + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
                details={**(context or {}), "errors": problems},
            ) from None
        roles, scopes = doc.grants()
        return cls(
            version=doc.version,
            roles=roles,
            scopes=scopes,
            principals={
                name: Principal(name, frozenset(p.roles)) for name, p in doc.principals.items()
            },
            pii_mode=doc.pii_mode,
            restricted_pii=frozenset(
                normalise_pii_class(c, feature="restricted_pii") for c in doc.restricted_pii
            ),
        )

    def to_yaml_text(self) -> str:
        """The policy as a YAML document (what :meth:`from_yaml_text` reads)."""
        doc = {
            "version": self.version,
            "pii_mode": self.pii_mode,
            "restricted_pii": sorted(self.restricted_pii),
            "roles": {name: self._role_doc(name, perms) for name, perms in self.roles.items()},
            "principals": {p.name: {"roles": sorted(p.roles)} for p in self.principals.values()},
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def to_yaml(self, path: str | Path) -> None:
        """Write the policy atomically (temporary file, fsync, rename)."""
        text = self.to_yaml_text()
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _role_doc(self, name: str, permissions: frozenset[Permission]) -> list[Any]:
        scoped = self.scopes.get(name, {})
        return [
            {p.value: list(scoped[p])} if p in scoped else p.value
            for p in sorted(permissions, key=lambda p: p.value)
        ]

    def with_principal(self, name: str, roles: Iterable[str]) -> Policy:
        """A new version with ``name`` holding exactly ``roles`` (added or replaced).

        Raises:
            InvalidInputError: for an empty name or an undefined role.
        """
        role_set = frozenset(roles)
        if not name.strip():
            raise InvalidInputError("principal name is empty", details={"field": "name"})
        unknown = sorted(role_set - set(self.roles))
        if unknown:
            raise InvalidInputError(
                f"role(s) {unknown} are not defined in the policy",
                details={"field": "roles", "roles": unknown},
            )
        principals = {**self.principals, name: Principal(name, role_set)}
        return replace(self, version=self.version + 1, principals=principals)

    def permissions_of(self, principal: Principal) -> frozenset[Permission]:
        """Every permission the principal's roles grant; ``admin`` expands to all."""
        granted: frozenset[Permission] = frozenset().union(
            *(
                SERVICE_PERMISSIONS if role == SERVICE_ROLE else self.roles.get(role, frozenset())
                for role in principal.roles
            )
        )
        return _ALL_PERMISSIONS if Permission.ADMIN in granted else granted

    def authorize(
        self, principal: Principal, action: Permission | str, resource: str = "*"
    ) -> Decision:
        """Decide whether ``principal`` may perform ``action`` on ``resource``.

        Raises:
            InvalidInputError: when ``action`` is not a known permission.
        """
        permission = _parse_permission(action)
        if any(self._role_allows(role, permission, resource) for role in principal.roles):
            return Decision(True, principal.name, permission.value, resource, "granted by role")
        if permission in self.permissions_of(principal):
            reason = f"permission {permission.value} is not granted on {resource!r}"
        else:
            reason = f"requires permission {permission.value}"
        return Decision(False, principal.name, permission.value, resource, reason)

    def _role_allows(self, role: str, permission: Permission, resource: str) -> bool:
        if role == SERVICE_ROLE:
            return permission in SERVICE_PERMISSIONS
        granted = self.roles.get(role, frozenset())
        if Permission.ADMIN in granted:
            return True
        if permission not in granted:
            return False
        patterns = self.scopes.get(role, {}).get(permission)
        return patterns is None or covers(patterns, resource)

    def authorize_features(
        self, principal: Principal, features: Mapping[str, object], resource: str = "*"
    ) -> Decision:
        """Decide a feature read, applying the PII rules per feature.

        Args:
            principal: Who reads.
            features: Feature name (``view:feature``) -> PII class (``PiiClass``
                member or its value). Each view needs ``features:read`` on
                ``view:<view>``; a restricted feature needs ``features:read_pii`` on
                ``feature:<view>:<feature>``.
            resource: What is read (feature service or view), for the record.

        Returns:
            A denial without ``features:read``; without ``features:read_pii`` and with
            restricted features, an allowed decision listing them in
            ``masked_features`` (``mask`` mode) or a denial naming them (``refuse``).
        """
        base = self.authorize(principal, Permission.FEATURES_READ, resource)
        if not base.allowed:
            return base
        views = sorted({name.split(":", 1)[0] for name in features if ":" in name})
        for view in views:
            per_view = self.authorize(principal, Permission.FEATURES_READ, f"view:{view}")
            if not per_view.allowed:
                return replace(per_view, resource=resource)
        restricted = tuple(
            sorted(
                name
                for name, pii in features.items()
                if normalise_pii_class(pii, feature=name) in self.restricted_pii
                and not self.authorize(
                    principal, Permission.FEATURES_READ_PII, f"feature:{name}"
                ).allowed
            )
        )
        if not restricted:
            return base
        if self.pii_mode == "refuse":
            return replace(
                base,
                allowed=False,
                reason=f"features {list(restricted)} need {Permission.FEATURES_READ_PII.value}",
                masked_features=restricted,
            )
        return replace(
            base,
            reason=f"PII features masked without {Permission.FEATURES_READ_PII.value}",
            masked_features=restricted,
        )


def _field_of(loc: tuple[int | str, ...]) -> str:
    """A validation error's field path, without pydantic's union branch tags."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and "[" in p))


def _parse_permission(action: Permission | str) -> Permission:
    try:
        return Permission(action)
    except ValueError:
        raise InvalidInputError(
            f"action {action!r} is not a known permission",
            details={"field": "action", "known": [p.value for p in Permission]},
        ) from None
