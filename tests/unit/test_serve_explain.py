"""Serving explanations: per-alias explain, value provenance, PII values withheld."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from entai.deployments.explanations import (
    REQUEST_SOURCE,
    Explanations,
    masked_inputs,
    model_pii,
    row_explanations,
)
from entai.deployments.model_runtime import LoadedModel, background_of_reference, xgboost_model
from entai.deployments.platform import FeatureInputs, PlatformServices, ReadPlan
from entai.deployments.scoring import explain_rows
from entai.shared.core import InvalidInputError, PermissionDeniedError
from entai.shared.data import PiiClass
from entai.shared.features import (
    Entity,
    FeatureStatus,
    FeatureView,
    FeatureViewProjection,
    Field,
    ReadResult,
    ValueType,
)
from entai.shared.governance import Decision, Policy
from entai.shared.models import Background, LinearExplainer
from entai.shared.monitoring import MonitoringReference

NAMES = ("age", "email_score", "spend", "basket")
WHEN = datetime(2026, 12, 1, 12, tzinfo=UTC)
SECRET = 0.8642097531

user = Entity(name="user", join_keys=("user_id",), value_type=ValueType.INT64)
profile = FeatureView(
    name="profile",
    entities=(user,),
    schema=(
        Field(name="age", dtype=ValueType.FLOAT64, pii=PiiClass.QUASI_IDENTIFIER),
        Field(name="email_score", dtype=ValueType.FLOAT64, pii=PiiClass.IDENTIFIER),
        Field(name="spend", dtype=ValueType.FLOAT64),
    ),
    source="events",
    ttl=timedelta(days=30),
)
PROJECTIONS = (FeatureViewProjection.of(profile),)


@cache
def _booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(NAMES)))
    y = (x[:, 0] + x[:, 2] - x[:, 3] > 0).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(NAMES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, data, 10)


def _inputs() -> FeatureInputs:
    """Two entity rows: profile features read online, ``basket`` sent with the request."""
    matrix = np.array([[31.0, SECRET, 120.0, 2.0], [np.nan, np.nan, np.nan, 5.0]])
    read = ReadResult(
        features=("age", "email_score", "spend"),
        values=[[31.0, None], [SECRET, None], [120.0, None]],
        statuses=[[FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND]] * 3,
        event_timestamps=[WHEN, None],
    )
    return FeatureInputs(NAMES, matrix, ["u1", "u2"], ("profile",), (read,))


class PolicyAuth:
    """``authorize_features`` as the auth cache decides it, from a real policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.calls: list[tuple[str, Mapping[str, Any], str]] = []

    def authorize_features(
        self, token: str, features: Mapping[str, Any], resource: str = "*"
    ) -> Decision:
        self.calls.append((token, dict(features), resource))
        principal = self.policy.principals[token]  # the token is the principal's name here
        decision = self.policy.authorize_features(principal, features, resource)
        return decision.raise_if_denied()


def test_model_pii_names_the_classified_inputs_only() -> None:
    assert model_pii(PROJECTIONS) == {
        "profile:age": "quasi_identifier",
        "profile:email_score": "identifier",
    }


@pytest.mark.parametrize(
    ("principal", "masked"),
    [
        ("data-scientist", frozenset()),  # features:read_pii
        ("ml-engineer", frozenset({"email_score"})),  # features:read, no read_pii
        ("app", frozenset({"age", "email_score"})),  # predict only: denied, fails closed
    ],
)
def test_pii_values_are_withheld_without_read_pii(principal: str, masked: frozenset[str]) -> None:
    auth = PolicyAuth(Policy.default())
    assert masked_inputs(auth, principal, model_pii(PROJECTIONS), "model:m") == masked
    assert auth.calls[0][2] == "model:m"


def test_refuse_mode_withholds_every_pii_value() -> None:
    policy = Policy(
        version=1,
        roles=Policy.default().roles,
        principals=Policy.default().principals,
        pii_mode="refuse",
    )
    auth = PolicyAuth(policy)
    with pytest.raises(PermissionDeniedError):
        auth.authorize_features("ml-engineer", model_pii(PROJECTIONS), "model:m")
    got = masked_inputs(auth, "ml-engineer", model_pii(PROJECTIONS), "model:m")
    assert got == frozenset({"age", "email_score"})


def test_a_model_without_pii_inputs_asks_governance_nothing() -> None:
    auth = PolicyAuth(Policy.default())
    assert masked_inputs(auth, "app", {}, "model:m") == frozenset()
    assert auth.calls == []


def test_explanations_name_masked_features_but_carry_no_value() -> None:
    inputs = _inputs()
    models = {"champion": xgboost_model(3, _booster())}
    explained = explain_rows(models, inputs.names, inputs.matrix, ["champion"] * 2)
    rows = row_explanations(explained, inputs, frozenset({"email_score"}))
    first = {f.name: f for f in rows[0].features}
    assert [f.name for f in rows[0].features] == list(NAMES)
    assert first["email_score"].masked and first["email_score"].value is None
    assert first["email_score"].contribution == explained[0].contributions[1]
    assert first["age"].value == 31.0 and not first["age"].masked
    assert repr(SECRET) not in rows[0].model_dump_json()  # the withheld value is nowhere
    # provenance: the view, the read's status and event time; request features say so
    assert (first["spend"].source, first["spend"].status) == ("profile", "PRESENT")
    assert first["spend"].event_timestamp == WHEN.isoformat()
    assert (first["basket"].source, first["basket"].status) == (REQUEST_SOURCE, None)
    assert first["basket"].value == 2.0
    second = {f.name: f for f in rows[1].features}
    assert (second["spend"].status, second["spend"].value) == ("NOT_FOUND", None)
    assert second["spend"].event_timestamp is None


def test_explained_rows_sum_to_the_margin_of_the_version_that_answered() -> None:
    inputs = _inputs()
    booster = _booster()
    other = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2},
        xgb.DMatrix(np.random.default_rng(1).normal(size=(200, 4)), label=np.arange(200) % 2,
                    feature_names=list(NAMES)),
        5,
    )  # fmt: skip
    models = {"champion": xgboost_model(3, booster), "challenger": xgboost_model(4, other)}
    # columns sent in another order than the model's: reordered like scoring does
    order = [2, 0, 3, 1]
    names = tuple(NAMES[j] for j in order)
    explained = explain_rows(models, names, inputs.matrix[:, order], ["challenger", "champion"])
    assert [(e.version, e.alias) for e in explained] == [(4, "challenger"), (3, "champion")]
    for e, b, row in zip(explained, (other, booster), inputs.matrix, strict=True):
        margin = float(b.inplace_predict(row[None].astype(np.float32), predict_type="margin")[0])
        assert e.margin == pytest.approx(margin, abs=1e-5)
        assert e.base_value + sum(e.contributions) == pytest.approx(margin, abs=1e-4)
        assert e.score == pytest.approx(float(b.inplace_predict(row[None].astype(np.float32))[0]))
        assert e.method == "tree_shap" and e.feature_names == NAMES


def test_a_version_without_explainer_is_refused_clearly() -> None:
    models = {"champion": LoadedModel(1, ("a",), lambda m: m[:, 0])}
    with pytest.raises(InvalidInputError, match="cannot be explained"):
        explain_rows(models, ("a",), np.ones((1, 1)), ["champion"])


def test_linear_versions_explain_exactly_through_the_scorer_rule() -> None:
    background = Background(rows=np.zeros((1, 2)), mean=np.array([1.0, 2.0]))
    explainer = LinearExplainer([2.0, -1.0], 0.5, ("a", "b"), background)
    model = LoadedModel(1, ("a", "b"), lambda m: m @ [2.0, -1.0] + 0.5, explainer)
    (row,) = explain_rows({"champion": model}, ("a", "b"), np.array([[3.0, 1.0]]), ["champion"])
    assert row.contributions == (4.0, 1.0)  # 2*(3-1), -1*(1-2)
    assert row.base_value == pytest.approx(0.5)  # 2*1 - 1*2 + 0.5
    assert row.margin == pytest.approx(5.5) == row.score


def test_background_of_a_monitoring_reference_keeps_means_and_marginals() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(3.0, 1.0, 500), "b": rng.uniform(0, 10, 500)})
    reference = MonitoringReference.from_scores(frame, ["a", "b"], rng.random(500)).to_dict()
    background = background_of_reference(reference, ("b", "a"), rows=20)
    assert background is not None
    assert background.rows.shape == (20, 2)
    np.testing.assert_allclose(background.mean, [frame["b"].mean(), frame["a"].mean()])
    assert sorted(background.rows[:, 1]) == pytest.approx(
        np.quantile(frame["a"], np.linspace(0, 1, 20)), abs=1e-9
    )
    assert background_of_reference(reference, ("a", "zz")) is None


class _Breaker:
    async def call(self, make: Any) -> Any:
        return await make()


class _Scorer:
    def __init__(self, models: Mapping[str, LoadedModel]) -> None:
        self.models = models

    async def explain(self, names: Any, matrix: Any, aliases: Any, request_names: Any = ()) -> Any:
        return explain_rows(self.models, names, matrix, aliases, request_names)


def test_the_ingress_helper_asks_governance_for_pii_models_only() -> None:
    auth = PolicyAuth(Policy.default())
    services = PlatformServices.__new__(PlatformServices)
    services.auth = auth  # type: ignore[assignment]
    services.model_features = PROJECTIONS
    services.model_plan = ReadPlan.of(PROJECTIONS)
    services.breakers = type("B", (), {"governance": _Breaker()})()  # type: ignore[assignment]
    helper = Explanations(services, _Scorer({"champion": xgboost_model(1, _booster())}))
    inputs = _inputs()
    rows = asyncio.run(helper.explain("ml-engineer", "m", inputs, ["champion"] * 2, ["basket"]))
    masked = [f.name for f in rows[0].features if f.masked]
    assert masked == ["email_score"]
    assert auth.calls == [("ml-engineer", model_pii(PROJECTIONS), "model:m")]
