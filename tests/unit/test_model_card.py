"""Model cards: completeness names every empty section; JSON round-trips."""

from __future__ import annotations

import pytest

from entai.shared.core import InvalidInputError
from entai.shared.models import ModelCard, TrainingDataSummary, binary_fairness


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
