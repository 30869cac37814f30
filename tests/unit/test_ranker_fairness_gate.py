"""The ranker's fairness: its held-out ranking's exposure and NDCG per item group go to
the card and the metrics, and the promotion gate's ranking thresholds refuse a ranker
that always ranks one group last (with the numbers) and pass a fair one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.pipelines.training import (
    RankingFairnessConfig,
    check_ranking_fairness_columns,
    fairness_metrics,
    ranking_fairness_reports,
)
from entai.shared.core import InvalidInputError, PromotionRejectedError
from entai.shared.models import (
    Candidate,
    FairnessPolicy,
    ModelCard,
    PromotionPolicy,
    RankingFairnessReport,
    TrainingDataSummary,
    binary_fairness,
    check_promotion,
)

K = 5
POLICY = PromotionPolicy(
    min_metrics={},
    fairness=FairnessPolicy(
        ranking_attributes=("category",), min_exposure_ratio=0.8, max_ndcg_difference=0.2
    ),
)
CONFIG = RankingFairnessConfig(columns=("category",), min_group_size=50)


def held_out(*, requests: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranked rows of ``requests`` queries, 10 candidates each (5 shoes, 5 books), with
    relevance drawn the same way for both groups; the catalogue holds the category."""
    rng = np.random.default_rng(seed)
    items = np.arange(20, dtype=np.int64)
    catalogue = pd.DataFrame(
        {"product_id": items, "category": np.where(items < 10, "shoes", "books")}
    )
    chosen = [
        np.concatenate([rng.choice(10, 5, replace=False), 10 + rng.choice(10, 5, replace=False)])
        for _ in range(requests)
    ]
    rows = pd.DataFrame(
        {
            "request_id": np.repeat([f"u{r}@t" for r in range(requests)], 10),
            "product_id": np.concatenate(chosen),
            "gain": rng.choice([0.0, 0.0, 1.0, 2.0, 3.0], size=requests * 10),
        }
    )
    return rows, catalogue


def evaluate(scores: np.ndarray, rows: pd.DataFrame, catalogue: pd.DataFrame) -> Any:
    reports = ranking_fairness_reports(CONFIG, rows, catalogue, scores, k=K)
    return reports, fairness_metrics(reports)


def card(reports: dict[str, RankingFairnessReport]) -> ModelCard:
    return ModelCard(
        model_name="product_ranker",
        intended_use="order candidate products",
        training_data=TrainingDataSummary(dataset_id="ranking-1", feature_service="idx", rows=10),
        metrics={"valid_auc": 0.8},
        ranking_fairness=reports,
        limitations=("synthetic",),
        owners=("team",),
    )


def promote(model_card: ModelCard, policy: PromotionPolicy = POLICY) -> Any:
    candidate = Candidate(version=3, registrant="alice", card=model_card)
    return check_promotion(
        policy, alias="champion", candidate=candidate, incumbent=None, approver="bob"
    )


def test_a_ranker_that_ranks_one_group_last_is_refused_with_the_numbers() -> None:
    rows, catalogue = held_out()
    rng = np.random.default_rng(1)
    books = rows["product_id"].to_numpy() >= 10
    scores = rng.random(len(rows)) + np.where(books, 0.0, 1.0)  # books always below shoes
    reports, metrics = evaluate(scores, rows, catalogue)
    report = reports["category"]
    assert report.group("books").exposure == 0.0  # never in the top 5
    assert report.group("shoes").exposure_share == pytest.approx(1.0)
    assert report.exposure_ratio.value == 0.0
    assert metrics["valid_fairness_category_exposure_ratio"] == 0.0
    assert set(metrics) == {
        "valid_fairness_category_exposure_ratio",
        "valid_fairness_category_ndcg_difference",
    }

    verdict = promote(card(reports))
    assert not verdict.approved
    (failure,) = verdict.failures  # NDCG within each group's own items is not biased here
    details = failure.details
    assert (details["measure"], details["value"], details["threshold"]) == (
        "exposure_ratio",
        0.0,
        0.8,
    )
    assert list(details["worst_groups"]) == ["books", "shoes"]
    assert details["worst_groups"]["shoes"] > 0.3
    with pytest.raises(PromotionRejectedError) as caught:
        verdict.raise_if_rejected("product_ranker")
    assert (
        "category: exposure_ratio=0.0000 is below the minimum 0.8 (mean_exposure: books=0.0000, "
        "shoes=" in str(caught.value)
    )
    measured = verdict.details()["measured"]["fairness"]["category"]
    assert measured["exposure_ratio"] == 0.0 and measured["ndcg_difference"] is not None


def test_a_fair_ranker_passes_and_the_card_shows_its_numbers() -> None:
    rows, catalogue = held_out()
    scores = np.random.default_rng(2).random(len(rows))
    reports, metrics = evaluate(scores, rows, catalogue)
    assert metrics["valid_fairness_category_exposure_ratio"] > 0.9
    assert metrics["valid_fairness_category_ndcg_difference"] < 0.1
    model_card = card(reports)
    verdict = promote(model_card)
    assert verdict.approved, verdict.details()
    assert "fairness" in verdict.gates_checked
    assert ModelCard.from_json(model_card.to_json()) == model_card
    text = model_card.to_markdown()
    assert "## Ranking fairness by category" in text
    assert "- exposure_ratio: 0.9" in text
    assert "| books | 1000 | 200 |" in text


def test_a_column_of_the_rows_is_used_before_the_catalogue() -> None:
    rows, catalogue = held_out(requests=20)
    rows = rows.assign(category=np.where(rows["gain"] > 0, "liked", "other"))
    reports = ranking_fairness_reports(CONFIG, rows, catalogue, np.zeros(len(rows)), k=K)
    assert {g.group for g in reports["category"].groups} == {"liked", "other"}
    with pytest.raises(InvalidInputError, match=r"fairness.columns \['seller'\]"):
        check_ranking_fairness_columns(RankingFairnessConfig(columns=("seller",)), rows, catalogue)


def test_policy_thresholds_apply_to_the_kind_of_model_they_are_for() -> None:
    rows, catalogue = held_out(requests=50)
    reports, _ = evaluate(np.zeros(len(rows)), rows, catalogue)
    binary_only = PromotionPolicy(
        min_metrics={}, fairness=FairnessPolicy(max_demographic_parity_difference=0.1)
    )
    verdict = promote(card(reports), binary_only)
    assert [f.gate for f in verdict.failures] == ["fairness"]
    assert "sets no threshold for a ranker" in verdict.failures[0].reason

    one_group = binary_fairness([1, 0], [0.9, 0.1], ["a", "b"], attribute="region")
    binary_card = card({}).model_copy(update={"fairness": {"region": one_group}})
    verdict = promote(binary_card)
    assert "sets no threshold for a binary classifier" in verdict.failures[0].reason

    missing = PromotionPolicy(
        min_metrics={},
        fairness=FairnessPolicy(ranking_attributes=("seller",), min_exposure_ratio=0.5),
    )
    verdict = promote(card(reports), missing)
    assert "no ranking fairness evaluation by 'seller'" in verdict.failures[0].reason
