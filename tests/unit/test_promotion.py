"""Promotion gates: each failure is reported with a reason; all pass -> approved."""

from __future__ import annotations

import pytest

from entai.shared.core import PromotionRejectedError
from entai.shared.models import (
    Candidate,
    ModelCard,
    PromotionPolicy,
    TrainingDataSummary,
    check_promotion,
)

CARD = ModelCard(
    model_name="m",
    intended_use="ranking",
    training_data=TrainingDataSummary(dataset_id="ts-1", feature_service="fs", rows=10),
    metrics={"valid_auc": 0.8},
    limitations=("none known",),
    owners=("team",),
)
POLICY = PromotionPolicy(min_metrics={"valid_auc": 0.7}, tolerance=0.01)


def cand(version: int, auc: float, *, valid_id: str = "v1", **kw: object) -> Candidate:
    args: dict[str, object] = {
        "version": version,
        "registrant": "alice",
        "metrics": {"valid_auc": auc},
        "validation_dataset_id": valid_id,
        "card": CARD,
    }
    args.update(kw)
    return Candidate(**args)  # type: ignore[arg-type]


def gates_failed(**kw: object) -> list[str]:
    args: dict[str, object] = {
        "alias": "champion",
        "candidate": cand(2, 0.80),
        "incumbent": cand(1, 0.79),
        "approver": "bob",
    }
    args.update(kw)
    verdict = check_promotion(POLICY, **args)  # type: ignore[arg-type]
    return [f.gate for f in verdict.failures]


def test_all_gates_pass() -> None:
    verdict = check_promotion(
        POLICY, alias="champion", candidate=cand(2, 0.80), incumbent=cand(1, 0.79), approver="bob"
    )
    assert verdict.approved
    assert verdict.gates_checked == (
        "metric_thresholds",
        "model_card",
        "not_worse_than_champion",
        "distinct_approver",
    )
    verdict.raise_if_rejected("m")


def test_metric_below_threshold_fails() -> None:
    assert gates_failed(candidate=cand(2, 0.65), incumbent=None) == ["metric_thresholds"]


def test_missing_metric_fails() -> None:
    assert gates_failed(candidate=cand(2, 0.8, metrics={}), incumbent=None) == ["metric_thresholds"]


def test_max_metric_bound() -> None:
    policy = PromotionPolicy(min_metrics={}, max_metrics={"valid_logloss": 0.3})
    verdict = check_promotion(
        policy,
        alias="champion",
        candidate=cand(2, 0.8, metrics={"valid_logloss": 0.4}),
        incumbent=None,
        approver="bob",
    )
    assert [f.reason for f in verdict.failures] == ["valid_logloss=0.4000 is above the maximum 0.3"]


def test_missing_or_incomplete_card_fails() -> None:
    assert gates_failed(candidate=cand(2, 0.8, card=None)) == ["model_card"]
    incomplete = CARD.model_copy(update={"limitations": ()})
    verdict = check_promotion(
        POLICY,
        alias="champion",
        candidate=cand(2, 0.8, card=incomplete),
        incumbent=None,
        approver="bob",
    )
    assert "limitations" in verdict.failures[0].reason


def test_worse_than_champion_beyond_tolerance_fails() -> None:
    assert gates_failed(candidate=cand(2, 0.77), incumbent=cand(1, 0.79)) == [
        "not_worse_than_champion"
    ]


def test_slightly_worse_within_tolerance_passes() -> None:
    assert gates_failed(candidate=cand(2, 0.785), incumbent=cand(1, 0.79)) == []


def test_different_validation_sets_need_a_common_evaluation() -> None:
    failed = check_promotion(
        POLICY,
        alias="champion",
        candidate=cand(2, 0.9, valid_id="v2"),
        incumbent=cand(1, 0.7, valid_id="v1"),
        approver="bob",
    )
    assert [f.gate for f in failed.failures] == ["not_worse_than_champion"]
    assert "share no evaluation dataset" in failed.failures[0].reason
    # the champion re-evaluated on the challenger's set: compared there, and worse
    incumbent = cand(1, 0.7, valid_id="v1", evaluations={"v2": {"valid_auc": 0.95}})
    verdict = check_promotion(
        POLICY,
        alias="champion",
        candidate=cand(2, 0.9, valid_id="v2"),
        incumbent=incumbent,
        approver="bob",
    )
    assert "on dataset 'v2'" in verdict.failures[0].reason


def test_approver_must_not_be_registrant() -> None:
    assert gates_failed(approver="alice") == ["distinct_approver"]
    assert gates_failed(approver="") == ["distinct_approver"]


def test_every_failure_is_reported_at_once() -> None:
    verdict = check_promotion(
        POLICY,
        alias="champion",
        candidate=cand(2, 0.6, card=None),
        incumbent=cand(1, 0.79),
        approver="alice",
    )
    assert [f.gate for f in verdict.failures] == [
        "metric_thresholds",
        "model_card",
        "not_worse_than_champion",
        "distinct_approver",
    ]
    with pytest.raises(PromotionRejectedError) as err:
        verdict.raise_if_rejected("m")
    assert len(err.value.details["failures"]) == 4
    assert "distinct_approver" in str(err.value)


def test_ungated_alias_passes_without_checks() -> None:
    verdict = check_promotion(
        POLICY, alias="shadow", candidate=cand(2, 0.1, card=None), incumbent=None, approver="alice"
    )
    assert verdict.approved
    assert verdict.gates_checked == ()


def test_lower_is_better_primary_metric() -> None:
    policy = PromotionPolicy(
        min_metrics={}, primary_metric="valid_logloss", higher_is_better=False, tolerance=0.0
    )
    worse = check_promotion(
        policy,
        alias="champion",
        candidate=cand(2, 0.8, metrics={"valid_logloss": 0.31}),
        incumbent=cand(1, 0.8, metrics={"valid_logloss": 0.30}),
        approver="bob",
    )
    assert [f.gate for f in worse.failures] == ["not_worse_than_champion"]
