"""The fairness promotion gate: a planted bias is refused with the numbers, a fair model
passes; missing or incomputable reports fail; the policy loads from settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from entai.pipelines.training import FairnessConfig, with_fairness
from entai.shared.core import PromotionRejectedError
from entai.shared.models import (
    Candidate,
    FairnessPolicy,
    ModelCard,
    PromotionPolicy,
    TrainingDataSummary,
    binary_fairness,
    check_promotion,
)
from entai.shared.settings import EntaiSettings

FAIRNESS = FairnessPolicy(
    attributes=("region",),
    max_demographic_parity_difference=0.1,
    max_equalized_odds_difference=0.1,
    min_disparate_impact_ratio=0.8,
)
POLICY = PromotionPolicy(min_metrics={}, fairness=FAIRNESS)


def card(evaluation: dict[str, Any] | None = None) -> ModelCard:
    return ModelCard(
        model_name="m",
        intended_use="offers",
        training_data=TrainingDataSummary(dataset_id="ts-1", feature_service="fs", rows=10),
        metrics={"valid_auc": 0.8},
        fairness=(evaluation or {}).get("fairness", {}),
        limitations=("synthetic",),
        owners=("team",),
    )


def promote(model_card: ModelCard | None, policy: PromotionPolicy = POLICY) -> Any:
    candidate = Candidate(version=2, registrant="alice", card=model_card)
    return check_promotion(
        policy, alias="champion", candidate=candidate, incumbent=None, approver="bob"
    )


def planted(shift: float, *, seed: int = 0, rows: int = 6_000) -> dict[str, Any]:
    """Train on data where the south's labels are shifted down by ``shift`` (in logits),
    with a feature that is a proxy of the region; evaluate on held-out rows like training
    does (``with_fairness`` on the validation set)."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south"], rows)
    south = region == "south"
    x = rng.normal(size=(rows, 3))
    proxy = south + rng.normal(scale=0.5, size=rows)  # e.g. a postcode feature
    logit = x @ np.array([1.0, -0.8, 0.5]) - shift * south
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    features = np.column_stack([x, proxy])
    half = rows // 2
    model = LogisticRegression().fit(features[:half], labels[:half])
    scores = model.predict_proba(features[half:])[:, 1]
    valid = pd.DataFrame({"region": region[half:], "label": labels[half:]})
    evaluation = {"metrics": {"valid_auc": 0.8}}
    return with_fairness(
        evaluation, FairnessConfig(columns=("region",)), valid, valid["label"], scores
    )


def test_planted_bias_is_flagged_and_refused_with_the_numbers() -> None:
    evaluation = planted(shift=1.5)
    report = evaluation["fairness"]["region"]
    assert report["demographic_parity_difference"]["value"] > 0.15
    assert report["disparate_impact_ratio"]["value"] < 0.6
    assert evaluation["metrics"]["valid_fairness_region_demographic_parity_difference"] > 0.15

    verdict = promote(card(evaluation))
    assert not verdict.approved
    failed = {f.details["measure"]: f for f in verdict.failures}
    assert set(failed) == {"demographic_parity_difference", "disparate_impact_ratio"}
    parity = failed["demographic_parity_difference"].details
    assert parity["threshold"] == 0.1
    assert parity["value"] == pytest.approx(report["demographic_parity_difference"]["value"])
    assert list(parity["worst_groups"]) == ["south", "north"]  # lowest selection rate first
    assert parity["worst_groups"]["south"] < parity["worst_groups"]["north"]
    with pytest.raises(PromotionRejectedError) as caught:
        verdict.raise_if_rejected("m")
    message = str(caught.value)
    assert "region: demographic_parity_difference=0.1" in message
    assert "is above the maximum 0.1 (selection_rate: south=" in message
    assert "disparate_impact_ratio=0.5" in message
    failures = caught.value.details["failures"]
    assert {f["details"]["measure"] for f in failures} == set(failed)


def test_fair_model_passes_and_the_numbers_are_recorded() -> None:
    evaluation = planted(shift=0.0)
    verdict = promote(card(evaluation))
    assert verdict.approved, verdict.details()
    assert "fairness" in verdict.gates_checked
    measured = verdict.details()["measured"]["fairness"]["region"]
    assert measured["demographic_parity_difference"] < 0.05
    assert measured["disparate_impact_ratio"] > 0.9


def test_a_card_without_fairness_fails_the_gate() -> None:
    verdict = promote(card())
    assert [f.gate for f in verdict.failures] == ["fairness"]
    assert "no fairness evaluation by 'region'" in verdict.failures[0].reason
    verdict = promote(
        card(),
        PromotionPolicy(
            min_metrics={}, fairness=FairnessPolicy(max_demographic_parity_difference=0.1)
        ),
    )
    assert "train it with fairness.columns set" in verdict.failures[0].reason
    assert [f.gate for f in promote(None).failures] == ["model_card", "fairness"]


def test_a_measure_that_cannot_be_computed_fails_with_the_reason() -> None:
    one_group = binary_fairness([1, 0], [0.9, 0.1], ["north", "north"], attribute="region")
    model_card = card({"fairness": {"region": one_group.model_dump(mode="json")}})
    verdict = promote(model_card)
    assert len(verdict.failures) == 3
    assert "cannot be computed (fewer than two groups" in verdict.failures[0].reason
    assert verdict.failures[0].details["value"] is None


def test_without_attributes_every_reported_attribute_is_checked() -> None:
    evaluation = planted(shift=1.5)
    policy = PromotionPolicy(
        min_metrics={}, fairness=FairnessPolicy(min_disparate_impact_ratio=0.8)
    )
    verdict = promote(card(evaluation), policy)
    assert [f.details["measure"] for f in verdict.failures] == ["disparate_impact_ratio"]


def test_ungated_alias_skips_the_fairness_gate() -> None:
    candidate = Candidate(version=2, registrant="alice", card=card())
    verdict = check_promotion(
        POLICY, alias="shadow", candidate=candidate, incumbent=None, approver="alice"
    )
    assert verdict.approved


def test_a_fairness_policy_needs_a_threshold_in_range() -> None:
    with pytest.raises(ValidationError, match="sets no threshold"):
        FairnessPolicy(attributes=("region",))
    with pytest.raises(ValidationError, match="min_disparate_impact_ratio"):
        FairnessPolicy(min_disparate_impact_ratio=1.5)


def test_the_policy_comes_from_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ENTAI_"):
            monkeypatch.delenv(key)
    path = tmp_path / "entai.yaml"
    path.write_text(
        "registry:\n  policy:\n    fairness:\n      attributes: [region]\n"
        "      max_demographic_parity_difference: 0.1\n      min_disparate_impact_ratio: 0.8\n"
    )
    policy = EntaiSettings.from_yaml(path).registry.policy
    assert policy.fairness is not None
    assert policy.fairness.bounds() == [
        ("demographic_parity_difference", 0.1, True),
        ("disparate_impact_ratio", 0.8, False),
    ]
    assert PromotionPolicy().fairness is None  # off unless configured
