"""Fairness measures: exact numbers on hand-made data, the edge cases, rankers."""

from __future__ import annotations

from math import log2

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from entai.shared.core import InvalidInputError, NotFoundError
from entai.shared.models import RankingFairnessReport, binary_fairness, ranking_fairness

# group a: 4 rows, 2 positives; group b: 6 rows, 1 positive. Threshold 0.5.
LABELS = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
SCORES = [0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.2, 0.2, 0.3, 0.1]
GROUPS = ["a"] * 4 + ["b"] * 6


def test_per_group_rates_and_summary_are_exact() -> None:
    report = binary_fairness(LABELS, SCORES, GROUPS, attribute="g", min_group_size=1, bins=2)
    a, b = report.group("a"), report.group("b")
    assert (a.count, a.positives, b.count, b.positives) == (4, 2, 6, 1)
    # a: selected 0.9 and 0.6 -> one of two positives, one of two negatives
    assert a.selection_rate == pytest.approx(0.5)
    assert (a.tpr, a.fpr) == (pytest.approx(0.5), pytest.approx(0.5))
    assert a.auc == pytest.approx(0.75)  # positive above negative in 3 of 4 pairs
    assert (a.mean_score, a.label_rate) == (pytest.approx(0.5), pytest.approx(0.5))
    # bins [0, .5): scores .4 .1, labels 1 0 -> |0.5 - 1|; [.5, 1]: .9 .6, 1 0 -> |1.5 - 1|
    assert a.ece == pytest.approx((0.5 + 0.5) / 4)
    # b: selected 0.8 (the positive) and 0.7
    assert b.selection_rate == pytest.approx(2 / 6)
    assert (b.tpr, b.fpr, b.auc) == (pytest.approx(1.0), pytest.approx(0.2), pytest.approx(1.0))
    assert b.mean_score == pytest.approx(2.3 / 6)
    assert b.ece == pytest.approx((0.8 + 0.5) / 6)

    parity = report.demographic_parity_difference
    assert parity.value == pytest.approx(0.5 - 2 / 6)
    assert parity.rate == "selection_rate"
    assert parity.worst_groups == {"b": pytest.approx(2 / 6), "a": pytest.approx(0.5)}
    odds = report.equalized_odds_difference  # TPR gap 0.5 beats FPR gap 0.3
    assert (odds.value, odds.rate) == (pytest.approx(0.5), "tpr")
    assert odds.worst_groups == {"a": pytest.approx(0.5), "b": pytest.approx(1.0)}
    impact = report.disparate_impact_ratio
    assert impact.value == pytest.approx((2 / 6) / 0.5)
    assert report.summary() == {
        "demographic_parity_difference": pytest.approx(1 / 6),
        "equalized_odds_difference": pytest.approx(0.5),
        "disparate_impact_ratio": pytest.approx(2 / 3),
    }
    assert report.insufficient == ()
    with pytest.raises(NotFoundError, match="'z'"):
        report.group("z")


def test_auc_with_tied_scores_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(3_000), 1)  # heavy ties
    labels = (rng.random(3_000) < scores).astype(int)
    groups = rng.choice(["x", "y", "z"], 3_000)
    report = binary_fairness(labels, scores, groups, attribute="g")
    for row in report.groups:
        mask = groups == row.group
        assert row.auc == pytest.approx(roc_auc_score(labels[mask], scores[mask]), abs=1e-12)


def test_small_group_is_reported_with_its_numbers_but_not_compared() -> None:
    report = binary_fairness(
        [*LABELS, 1, 0],
        [*SCORES, 0.95, 0.05],
        [*GROUPS, "c", "c"],
        attribute="g",
        min_group_size=3,
    )
    c = report.group("c")
    assert (c.count, c.sufficient, c.selection_rate, c.tpr, c.fpr) == (2, False, 0.5, 1.0, 0.0)
    assert report.insufficient == ("c",)
    parity = report.demographic_parity_difference
    assert parity.value == pytest.approx(0.5 - 2 / 6)  # c (0.5) is not compared
    assert "c" not in parity.worst_groups
    assert "fewer than 3 rows left out: ['c']" in parity.reason


def test_group_with_one_class_has_no_tpr_or_auc_and_the_reason_says_so() -> None:
    report = binary_fairness(
        [*LABELS, 0, 0, 0],
        [*SCORES, 0.9, 0.9, 0.1],
        [*GROUPS, "c", "c", "c"],
        attribute="g",
        min_group_size=1,
    )
    c = report.group("c")
    assert (c.tpr, c.auc, c.positives) == (None, None, 0)
    assert c.fpr == pytest.approx(2 / 3)
    odds = report.equalized_odds_difference
    # TPR over a, b: 0.5 .. 1.0; FPR over a, b, c: 0.2 .. 0.667 -> the TPR gap still wins
    assert (odds.value, odds.rate) == (pytest.approx(0.5), "tpr")
    assert "tpr undefined for ['c']" in odds.reason


def test_expected_group_without_rows_is_reported_empty() -> None:
    report = binary_fairness(
        LABELS, SCORES, GROUPS, attribute="g", min_group_size=1, expected_groups=["a", "b", "z"]
    )
    z = report.group("z")
    assert (z.count, z.sufficient, z.selection_rate, z.auc, z.ece) == (0, False, None, None, None)
    assert report.demographic_parity_difference.value == pytest.approx(1 / 6)
    assert "['z']" in report.demographic_parity_difference.reason


def test_single_group_has_no_summary_measures() -> None:
    report = binary_fairness(LABELS, SCORES, ["a"] * 10, attribute="g", min_group_size=1)
    assert report.summary() == {}
    for measure in report.measures().values():
        assert measure.value is None
        assert "fewer than two groups" in measure.reason


def test_nobody_selected_gives_no_impact_ratio() -> None:
    report = binary_fairness(LABELS, SCORES, GROUPS, attribute="g", threshold=1.0, min_group_size=1)
    assert report.demographic_parity_difference.value == 0.0
    impact = report.disparate_impact_ratio
    assert impact.value is None
    assert "no group has a score at or above the threshold 1.0" in impact.reason


@pytest.mark.parametrize(
    ("labels", "scores", "groups", "field"),
    [
        ([], [], [], "labels"),
        ([1, 2], [0.5, 0.5], ["a", "b"], "labels"),
        ([1, 0], [0.5], ["a", "b"], "scores"),
        ([1, 0], [0.5, 1.5], ["a", "b"], "scores"),
        ([1, 0], [0.5, float("nan")], ["a", "b"], "scores"),
        ([1, 0], [0.5, 0.5], ["a"], "groups"),
    ],
)
def test_bad_input_names_the_argument(
    labels: list[float], scores: list[float], groups: list[str], field: str
) -> None:
    with pytest.raises(InvalidInputError, match=field) as caught:
        binary_fairness(labels, scores, groups, attribute="g")
    assert caught.value.details["field"] == field


def test_bad_settings_name_the_argument() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        binary_fairness(LABELS, SCORES, GROUPS, attribute="g", threshold=2.0)
    with pytest.raises(InvalidInputError, match="min_group_size"):
        binary_fairness(LABELS, SCORES, GROUPS, attribute="g", min_group_size=0)


# -- rankers ------------------------------------------------------------------------------

# (query, group, relevance, score); ranked by score within each query
RANKED = [
    ("q1", "A", 2, 0.9),
    ("q1", "B", 0, 0.8),
    ("q1", "A", 0, 0.7),
    ("q1", "B", 1, 0.6),
    ("q2", "B", 1, 0.9),
    ("q2", "A", 1, 0.5),
    ("q2", "B", 0, 0.4),
    ("q3", "A", 0, 0.3),
]


def ranked(k: int = 2, min_group_size: int = 1) -> RankingFairnessReport:
    q, g, rel, s = zip(*RANKED, strict=True)
    return ranking_fairness(q, rel, s, g, attribute="seller", k=k, min_group_size=min_group_size)


def test_exposure_and_ndcg_per_group_are_exact() -> None:
    report = ranked(k=2)
    first, second = 1.0, 1 / log2(3)  # position weights of ranks 1 and 2; rank 3+ is past k
    a, b = report.group("A"), report.group("B")
    # A: rank 1 in q1, rank 2 in q2, rank 1 in q3; B: rank 2 in q1, rank 1 in q2
    assert (a.items, a.queries, b.items, b.queries) == (4, 3, 4, 2)
    assert a.exposure == pytest.approx(first + second + first)
    assert b.exposure == pytest.approx(second + first)
    total = 3 * first + 2 * second
    assert a.exposure_share == pytest.approx((2 * first + second) / total)
    assert (a.relevance_share, b.relevance_share) == (pytest.approx(0.6), pytest.approx(0.4))
    assert a.mean_exposure == pytest.approx((2 * first + second) / 4)
    # A's own items are in ideal order in q1 and q2; q3 has no relevant A item (not scored)
    assert (a.ndcg_at_k, a.ndcg_queries) == (pytest.approx(1.0), 2)
    # B in q1: the irrelevant item is ranked above the relevant one -> second / first
    assert b.ndcg_at_k == pytest.approx((second + 1.0) / 2)
    assert b.ndcg_queries == 2
    assert report.exposure_ratio.value == pytest.approx((first + second) / (2 * first + second))
    assert report.exposure_ratio.worst_groups == {
        "B": pytest.approx((first + second) / 4),
        "A": pytest.approx((2 * first + second) / 4),
    }
    ndcg = report.ndcg_difference
    assert (ndcg.value, ndcg.rate) == (pytest.approx(1.0 - (second + 1.0) / 2), "ndcg_at_k")


def test_ranking_cut_off_and_small_groups() -> None:
    report = ranked(k=10, min_group_size=5)
    a = report.group("A")
    assert a.exposure == pytest.approx(1 + 1 / log2(4) + 1 / log2(3) + 1)
    assert not a.sufficient
    assert report.exposure_ratio.value is None
    assert "fewer than 5 items left out" in report.exposure_ratio.reason


def test_ndcg_of_one_group_matches_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    queries = np.repeat(np.arange(40), 12)
    relevance = rng.integers(0, 4, len(queries)).astype(float)
    scores = rng.random(len(queries))
    report = ranking_fairness(
        queries, relevance, scores, np.full(len(queries), "all"), attribute="g", k=5
    )
    per_query = [
        ndcg_score([relevance[queries == q]], [scores[queries == q]], k=5)
        for q in range(40)
        if relevance[queries == q].sum() > 0
    ]
    assert report.group("all").ndcg_at_k == pytest.approx(float(np.mean(per_query)), abs=1e-12)


def test_ranking_bad_input_names_the_argument() -> None:
    with pytest.raises(InvalidInputError, match="relevance"):
        ranking_fairness(["q"], [-1.0], [0.5], ["a"], attribute="g")
    with pytest.raises(InvalidInputError, match="scores"):
        ranking_fairness(["q", "q"], [1.0, 0.0], [0.5], ["a", "a"], attribute="g")
    with pytest.raises(InvalidInputError, match="k must be"):
        ranking_fairness(["q"], [1.0], [0.5], ["a"], attribute="g", k=0)
