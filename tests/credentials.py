"""Credentials for tests that call the data-plane actors' guarded methods.

In-process feature shards and drift monitors are given :func:`callers`: a check under a
fixed test secret that accepts its service credential :data:`SERVICE` (and no API
token). Actors started from settings check against that platform's own service
secret: present :func:`service_of` of the same settings.
"""

from __future__ import annotations

from entai.actors.governance import CallerCheck
from entai.shared.governance import service_credential
from entai.shared.settings import EntaiSettings, resolve_service_secret

TEST_SECRET = b"entai tests: the service secret of in-process actors"
SERVICE = service_credential(TEST_SECRET, "tests")
"""A service credential :func:`callers` accepts."""


def callers() -> CallerCheck:
    """The check of an in-process actor: service credentials under :data:`TEST_SECRET`."""
    return CallerCheck(TEST_SECRET, None)


def service_of(settings: EntaiSettings, service: str = "tests") -> str:
    """A service credential of the platform ``settings`` describe (its service secret)."""
    return service_credential(resolve_service_secret(settings), service)
