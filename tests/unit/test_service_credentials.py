"""Service credentials: only the secret's holder makes one, and the role it carries is
fixed and reserved."""

from __future__ import annotations

import pytest

from entai.shared.core import ConfigError
from entai.shared.governance import (
    SERVICE_ROLE,
    Permission,
    Policy,
    service_credential,
    service_of,
    service_principal,
)

SECRET = b"s" * 32


def test_a_credential_names_its_service_only_under_the_secret_it_was_signed_with() -> None:
    credential = service_credential(SECRET, "entai-model-registry")
    assert service_of(SECRET, credential) == "entai-model-registry"
    assert service_of(b"t" * 32, credential) is None
    renamed = credential.replace("entai-model-registry", "retrain-policy")
    assert service_of(SECRET, renamed) is None  # the name is under the MAC
    flipped = credential[:-1] + ("1" if credential.endswith("0") else "0")
    assert service_of(SECRET, flipped) is None
    assert service_of(SECRET, "entai_0123456789ab_" + "x" * 43) is None  # an API token


@pytest.mark.parametrize("name", ["", "A", "entai registry", "x" * 80, "-lead"])
def test_only_plain_names_are_service_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a service name"):
        service_credential(SECRET, name)


def test_the_service_role_grants_its_three_permissions_and_nothing_else() -> None:
    policy = Policy.default()
    service = service_principal("entai-serve")
    allowed = {p for p in Permission if policy.authorize(service, p, "model:any").allowed}
    assert allowed == {
        Permission.AUDIT_WRITE,
        Permission.MODELS_REGISTER,
        Permission.MODELS_APPROVE,
    }


def test_no_policy_may_define_the_service_role() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        Policy(
            version=1,
            roles={SERVICE_ROLE: frozenset({Permission.ADMIN})},
            principals={},
        )
