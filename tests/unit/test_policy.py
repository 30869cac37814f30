from __future__ import annotations

import contextlib
import pickle
from enum import StrEnum
from pathlib import Path

import pytest

from entai.shared.core import ConfigError, InvalidInputError, PermissionDeniedError
from entai.shared.governance import Permission, Policy, Principal


class Pii(StrEnum):
    """Stand-in for entai.shared.features._definitions.PiiClass (compared by value)."""

    NONE = "none"
    IDENTIFIER = "identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    FREE_TEXT = "free_text"


FEATURES = {
    "user_id_hash": Pii.IDENTIFIER,
    "diagnosis": Pii.SENSITIVE,
    "zip3": Pii.QUASI_IDENTIFIER,
    "clicks_7d": Pii.NONE,
}


def _principal(policy: Policy, name: str) -> Principal:
    return policy.principals[name]


@pytest.mark.parametrize("granted", list(Permission), ids=str)
def test_each_permission_allows_exactly_itself(granted: Permission) -> None:
    policy = Policy(
        version=1,
        roles={"only": frozenset({granted})},
        principals={"p": Principal("p", frozenset({"only"}))},
    )
    for action in Permission:
        decision = policy.authorize(policy.principals["p"], action, "thing")
        expected = granted is Permission.ADMIN or action is granted
        assert decision.allowed is expected, (granted, action)
        assert decision.action == action.value
        assert decision.resource == "thing"


def test_default_roles_grant_what_their_names_say() -> None:
    policy = Policy.default()
    perms = {name: policy.permissions_of(p) for name, p in policy.principals.items()}
    assert perms["admin"] == frozenset(Permission)
    assert perms["app"] == {Permission.PREDICT}
    assert perms["analyst"] == {Permission.FEATURES_READ}
    assert Permission.MODELS_APPROVE in perms["approver"]
    assert Permission.MODELS_APPROVE not in perms["data-scientist"]
    assert Permission.MODELS_REGISTER in perms["ml-engineer"]
    assert Permission.FEATURES_READ_PII not in perms["ml-engineer"]
    assert not any(Permission.ADMIN in p for name, p in perms.items() if name != "admin")


def test_denial_names_the_missing_permission_and_raises_permission_denied() -> None:
    policy = Policy.default()
    decision = policy.authorize(_principal(policy, "app"), "models:approve", "model:churn")
    assert not decision.allowed
    assert "models:approve" in decision.reason
    with pytest.raises(PermissionDeniedError) as info:
        decision.raise_if_denied()
    assert info.value.details["principal"] == "app"
    assert info.value.details["action"] == "models:approve"


def test_unknown_action_is_invalid_input_not_a_denial() -> None:
    policy = Policy.default()
    with pytest.raises(InvalidInputError) as info:
        policy.authorize(_principal(policy, "admin"), "features:delete_everything")
    assert info.value.details["field"] == "action"


def test_principal_holding_a_role_outside_the_policy_gets_nothing() -> None:
    policy = Policy.default()
    stranger = Principal("eve", frozenset({"superuser"}))
    assert policy.permissions_of(stranger) == frozenset()
    assert not policy.authorize(stranger, Permission.FEATURES_READ).allowed


def test_mask_mode_masks_only_restricted_pii_for_principals_without_read_pii() -> None:
    policy = Policy.default()
    decision = policy.authorize_features(_principal(policy, "analyst"), FEATURES, "fs:churn")
    assert decision.allowed
    assert decision.masked_features == ("diagnosis", "user_id_hash")
    assert decision.resource == "fs:churn"


def test_read_pii_unmasks_and_admin_implies_it() -> None:
    policy = Policy.default()
    for name in ("data-scientist", "admin"):
        decision = policy.authorize_features(_principal(policy, name), FEATURES)
        assert decision.allowed
        assert decision.masked_features == ()


def test_refuse_mode_denies_naming_the_pii_features() -> None:
    policy = Policy(
        version=1,
        roles=Policy.default().roles,
        principals=Policy.default().principals,
        pii_mode="refuse",
    )
    decision = policy.authorize_features(_principal(policy, "analyst"), FEATURES)
    assert not decision.allowed
    assert decision.masked_features == ("diagnosis", "user_id_hash")
    assert "diagnosis" in decision.reason and "user_id_hash" in decision.reason
    only_public = {"clicks_7d": "none", "zip3": "quasi-identifier"}
    assert policy.authorize_features(_principal(policy, "analyst"), only_public).allowed


def test_feature_read_needs_features_read_even_without_pii() -> None:
    policy = Policy.default()
    decision = policy.authorize_features(_principal(policy, "app"), {"clicks_7d": "none"})
    assert not decision.allowed
    assert decision.action == "features:read"


def test_plain_strings_work_and_unknown_pii_class_fails_closed() -> None:
    policy = Policy.default()
    analyst = _principal(policy, "analyst")
    decision = policy.authorize_features(analyst, {"email": "identifier", "n": "none"})
    assert decision.masked_features == ("email",)
    with pytest.raises(InvalidInputError) as info:
        policy.authorize_features(analyst, {"email": "secretish"})
    assert info.value.details["field"] == "email"


def test_yaml_round_trip_and_with_principal(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    policy = Policy.default().with_principal("alice", ["analyst", "approver"])
    assert policy.version == 2
    policy.to_yaml(path)
    loaded = Policy.from_yaml(path)
    assert loaded == policy
    assert loaded.principals["alice"].roles == {"analyst", "approver"}
    assert pickle.loads(pickle.dumps(loaded)) == loaded


def test_with_principal_rejects_undefined_roles() -> None:
    with pytest.raises(InvalidInputError) as info:
        Policy.default().with_principal("bob", ["root"])
    assert info.value.details["roles"] == ["root"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: 1\nroles: {a: [features:fly]}\n", "roles.a.0"),
        ("version: 0\nroles: {}\n", "version"),
        ("version: 1\nroles: {}\npii_mode: hide\n", "pii_mode"),
        ("version: 1\nroles: {}\nextra: 1\n", "extra"),
    ],
)
def test_invalid_policy_file_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Policy.from_yaml(path)
    assert field in {e["field"] for e in info.value.details["errors"]}


def test_policy_file_with_undefined_role_or_missing_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nroles: {a: [predict]}\nprincipals: {p: {roles: [b]}}\n")
    with pytest.raises(ConfigError, match="undefined role"):
        Policy.from_yaml(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        Policy.from_yaml(tmp_path / "missing.yaml")


SCOPED = """
version: 4
roles:
  fraud-app:
    - predict: ["model:fraud_*"]
    - events:write: [source:clickstream]
    - features:read: ["view:user_*"]
    - features:read_pii: ["feature:user_profile:*"]
  reader: [features:read]
principals:
  fraud-svc: {roles: [fraud-app]}
  bob: {roles: [reader]}
"""


@pytest.fixture
def scoped(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(SCOPED)
    return Policy.from_yaml(path)


@pytest.mark.parametrize(
    ("action", "resource", "allowed"),
    [
        ("predict", "model:fraud_v2", True),
        ("predict", "model:fraud_", True),
        ("predict", "model:churn", False),
        ("predict", "model:xfraud_v2", False),
        ("predict", "models", True),  # the service as a whole; each model is checked
        ("predict", "*", False),  # "every model" is more than the grant
        ("events:write", "source:clickstream", True),
        ("events:write", "source:clickstream2", False),
        ("events:write", "source:orders", False),
        ("models:register", "model:fraud_v2", False),  # not granted at all
        ("features:read", "view:user_stats", True),
        ("features:read", "view:item_stats", False),
    ],
)
def test_a_scoped_role_holds_only_on_its_resources(
    scoped: Policy, action: str, resource: str, allowed: bool
) -> None:
    decision = scoped.authorize(scoped.principals["fraud-svc"], action, resource)
    assert decision.allowed is allowed
    if not allowed and action != "models:register":
        assert f"not granted on {resource!r}" in decision.reason
    with pytest.raises(PermissionDeniedError) if not allowed else contextlib.nullcontext():
        decision.raise_if_denied()


def test_an_unscoped_grant_and_admin_hold_everywhere(scoped: Policy) -> None:
    bob = scoped.principals["bob"]
    assert scoped.authorize(bob, "features:read", "view:item_stats").allowed
    root = Policy.default().principals["admin"]
    assert Policy.default().authorize(root, "predict", "model:anything").allowed


def test_a_feature_read_checks_every_view_and_each_restricted_feature(scoped: Policy) -> None:
    svc = scoped.principals["fraud-svc"]
    ok = scoped.authorize_features(
        svc, {"user_profile:email": "identifier", "user_stats:views": "none"}, "fs"
    )
    assert ok.allowed and ok.masked_features == ()  # read_pii on user_profile's features
    masked = scoped.authorize_features(
        svc, {"user_stats:email": "identifier", "user_stats:views": "none"}, "fs"
    )
    assert masked.allowed and masked.masked_features == ("user_stats:email",)
    denied = scoped.authorize_features(
        svc, {"user_stats:views": "none", "item_stats:price": "none"}, "fs"
    )
    assert not denied.allowed and denied.resource == "fs"
    assert "view:item_stats" in denied.reason


def test_scopes_survive_the_file_and_pickling(scoped: Policy, tmp_path: Path) -> None:
    path = tmp_path / "again.yaml"
    scoped.to_yaml(path)
    again = Policy.from_yaml(path)
    assert again.scopes == scoped.scopes and again.roles == scoped.roles
    copied = pickle.loads(pickle.dumps(scoped))
    svc = copied.principals["fraud-svc"]
    assert not copied.authorize(svc, "predict", "model:churn").allowed
    assert copied.authorize(svc, "predict", "model:fraud_1").allowed


def test_a_scope_on_a_permission_the_role_lacks_or_on_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not grant"):
        Policy(1, {"r": frozenset()}, {}, scopes={"r": {Permission.PREDICT: ("model:*",)}})
    path = tmp_path / "empty.yaml"
    path.write_text("version: 1\nroles:\n  r:\n    - predict: []\n")
    with pytest.raises(ConfigError, match="on no resource"):
        Policy.from_yaml(path)
