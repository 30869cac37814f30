"""Model cards: completeness names every empty section; JSON round-trips."""

from __future__ import annotations

import pytest

from entai.shared.core import InvalidInputError
from entai.shared.models import (
    DependenceBin,
    FeatureImportance,
    GlobalExplanation,
    ModelCard,
    TrainingDataSummary,
    binary_fairness,
)


def complete_card() -> ModelCard:
    return ModelCard(
        model_name="propensity",
        intended_use="Rank users for a weekly category email.",
        training_data=TrainingDataSummary(
            dataset_id="ts-1", feature_service="purchase_propensity", rows=1000, label_rate=0.1
        ),
        metrics={"valid_auc": 0.8},
        limitations=("Cold-start users get the base rate.",),
        owners=("ml-team",),
    )


def test_complete_card_has_nothing_missing() -> None:
    card = complete_card()
    assert card.complete
    assert card.missing() == []


def test_empty_card_names_every_missing_section() -> None:
    card = ModelCard(model_name="m")
    assert not card.complete
    assert card.missing() == [
        "intended_use",
        "training_data.dataset_id",
        "training_data.rows",
        "training_data.feature_service",
        "metrics",
        "limitations",
        "owners",
    ]


def test_blank_text_counts_as_missing() -> None:
    card = complete_card().model_copy(update={"intended_use": "   ", "limitations": (" ",)})
    assert card.missing() == ["intended_use", "limitations"]


def test_json_round_trip_keeps_every_field() -> None:
    card = complete_card()
    assert ModelCard.from_json(card.to_json()) == card


def test_invalid_json_names_the_field() -> None:
    with pytest.raises(InvalidInputError) as err:
        ModelCard.from_mapping({"model_name": "m", "training_data": {"rows": -1}})
    assert "training_data.rows" in err.value.details["fields"]


def test_markdown_marks_missing_sections() -> None:
    text = ModelCard(model_name="m").to_markdown()
    assert text.startswith("# Model card: m")
    assert "## Limitations\n- _missing_" not in text
    assert "## Limitations\n_missing_" in text
    assert "valid_auc: 0.8000" in complete_card().to_markdown()


def test_fairness_section_round_trips_and_renders() -> None:
    report = binary_fairness(
        [1, 0, 1, 0, 1],
        [0.9, 0.2, 0.8, 0.6, 0.7],
        ["north", "north", "south", "south", "east"],
        attribute="region",
        min_group_size=2,
    )
    card = complete_card().model_copy(update={"fairness": {"region": report}})
    assert ModelCard.from_json(card.to_json()) == card
    text = card.to_markdown()
    assert "## Fairness by region" in text
    assert (
        "- demographic_parity_difference: 0.5000 (selection_rate: north=0.5000, south=1.0000)"
        in text
    )
    assert "| east (insufficient) | 1 | 1.0000 |" in text
    assert "groups with fewer than 2 rows left out: ['east']" in text


def _explanation() -> GlobalExplanation:
    return GlobalExplanation(
        method="tree_shap",
        rows=1000,
        base_value=-1.5,
        importance={"views_7d": 0.42, "buys_30d": 0.2},
        top=(
            FeatureImportance(
                feature="views_7d",
                mean_abs_contribution=0.42,
                mean_contribution=0.01,
                dependence=(
                    DependenceBin(low=0, high=2, rows=600, mean_value=0.5, mean_contribution=-0.3),
                    DependenceBin(low=3, high=40, rows=380, mean_value=9.0, mean_contribution=0.5),
                    DependenceBin(
                        low=None, high=None, rows=20, mean_value=None, mean_contribution=0.0
                    ),
                ),
            ),
        ),
    )


def test_registry_record_adds_lineage_and_this_versions_approvals_only() -> None:
    tags = {
        "entai.dataset_id": "ts-1",
        "entai.git_commit": "abc123",
        "entai.metrics": "{}",
        "entai.card": "runs:/x/card.json",
        "mlflow.source": "ignored",
    }
    history = [
        {"alias": "challenger", "version": 2, "kind": "set", "by": "trainer", "at": "t1"},
        {"alias": "champion", "version": "3", "kind": "promote", "by": "ann", "at": "t2",
         "reason": "better AUC"},
        {"alias": "champion", "version": 2, "kind": "rollback", "by": "bob", "at": "t3"},
    ]  # fmt: skip
    card = complete_card().with_registry_record(2, tags, history)
    assert card.version == 2
    assert card.lineage == {"entai.dataset_id": "ts-1", "entai.git_commit": "abc123"}
    assert [(a.alias, a.kind, a.by) for a in card.approvals] == [
        ("challenger", "set", "trainer"),
        ("champion", "rollback", "bob"),
    ]
    text = card.to_markdown()
    assert text.startswith("# Model card: propensity v2")
    assert "- entai.git_commit: abc123" in text
    assert (
        "## Approvals\n- t1: challenger (set) by trainer\n- t3: champion (rollback) by bob" in text
    )
    assert ModelCard.from_json(card.to_json()) == card


def test_markdown_shows_top_features_with_dependence_and_missing_sections() -> None:
    bare = complete_card().to_markdown()
    assert "## Top features\n_not recorded_" in bare
    assert "## Approvals\n_none recorded_" in bare
    card = complete_card().model_copy(update={"explanations": _explanation()})
    text = card.to_markdown()
    assert "over 1,000 validation rows (tree_shap; base value -1.5000)" in text
    assert "| views_7d | 0.4200 | 0.0100 |" in text
    assert (
        "- views_7d dependence (value: contribution (rows)): ~0.5: -0.3000 (600); "
        "~9: +0.5000 (380); missing: +0.0000 (20)"
    ) in text
    assert ModelCard.from_json(card.to_json()) == card


def test_html_is_one_escaped_self_contained_page() -> None:
    card = complete_card().model_copy(
        update={
            "intended_use": 'Rank <b>users</b> & "friends"',
            "explanations": _explanation(),
        }
    )
    page = card.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Model card: propensity</title>" in page
    assert "Rank &lt;b&gt;users&lt;/b&gt; &amp; &quot;friends&quot;" in page
    assert "<b>users</b>" not in page
    assert "<h2>Top features</h2>" in page
    assert "<th>feature</th><th>mean abs contribution</th>" in page
    assert "<tr><td>views_7d</td><td>0.4200</td><td>0.0100</td></tr>" in page
    assert "<li>valid_auc: 0.8000</li>" in page
    assert "<h2>Approvals</h2>\n<p><em>none recorded</em></p>" in page
    for outside in ("<script", "<link", "src=", "http://", "https://"):
        assert outside not in page
