"""Service credentials: how the platform's own services prove who they are.

The registry, the drift monitor, the retraining workflow and the Serve replicas call
the governance service for things no user's token does: recording an audit entry on
a user's behalf (the approver of a promotion the registry carried out), folding a
replica's request counts into the audit aggregates. They present a *service
credential*: ``entai-svc.<service>.<mac>``, where ``mac`` is HMAC-SHA-256 of the
service's name under the platform's service secret (``security.service_secret``,
from the secret store; in the embedded mode a file under the home). Only a process
that holds the secret can make one, and the governance service checks it in constant
time without a lookup.

A service credential names a principal that is not in the policy: the service, with
the reserved role ``SERVICE_ROLE`` (``SERVICE_PERMISSIONS``, in the policy module).
No policy file can define that role or give it to a person.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from entai.shared.governance._policy import SERVICE_ROLE, Principal

__all__ = [
    "SERVICE_PREFIX",
    "service_credential",
    "service_of",
    "service_principal",
]

SERVICE_PREFIX = "entai-svc."

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_DOMAIN = b"entai service credential\x00"


def _mac(secret: bytes, service: str) -> str:
    return hmac.new(secret, _DOMAIN + service.encode(), hashlib.sha256).hexdigest()


def service_credential(secret: bytes, service: str) -> str:
    """The credential of ``service`` (lowercase letters, digits and dashes).

    Raises:
        ValueError: for a name that is not a service name.
    """
    if not _NAME_RE.match(service):
        raise ValueError(f"{service!r} is not a service name (lowercase, digits, dashes)")
    return f"{SERVICE_PREFIX}{service}.{_mac(secret, service)}"


def service_of(secret: bytes, credential: str) -> str | None:
    """The service a credential names when its MAC is right, else None."""
    if not credential.startswith(SERVICE_PREFIX):
        return None
    service, _, mac = credential[len(SERVICE_PREFIX) :].rpartition(".")
    if not _NAME_RE.match(service):
        return None
    return service if hmac.compare_digest(mac, _mac(secret, service)) else None


def service_principal(service: str) -> Principal:
    """The principal a verified service credential stands for."""
    return Principal(service, frozenset({SERVICE_ROLE}))
