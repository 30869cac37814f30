"""score_rows: which loaded version answers each row, and the challenger fallback."""

from __future__ import annotations

import numpy as np
import pytest

from entai.deployments.model_runtime import LoadedModel
from entai.deployments.scoring import score_rows
from entai.shared.core import InvalidInputError

NAMES = ("a", "b")


def _model(version: int, weight: float) -> LoadedModel:
    return LoadedModel(version, NAMES, lambda m: m[:, 0] * weight + m[:, 1])


MATRIX = np.array([[1.0, 0.5], [2.0, 0.0], [3.0, 1.0]])


def test_each_row_is_scored_by_its_alias_in_input_order() -> None:
    models = {"champion": _model(1, 1.0), "challenger": _model(2, 10.0)}
    scored = score_rows(models, NAMES, MATRIX, ["champion", "challenger", "champion"])
    assert scored == [(1.5, 1, "champion"), (20.0, 2, "challenger"), (4.0, 1, "champion")]


def test_columns_are_reordered_to_the_model_and_missing_ones_refused() -> None:
    models = {"champion": _model(1, 1.0)}
    swapped = score_rows(models, ("b", "a"), MATRIX[:, ::-1], ["champion"] * 3)
    assert [s for s, _, _ in swapped] == [1.5, 2.0, 4.0]
    with pytest.raises(InvalidInputError):
        score_rows(models, ("a", "c"), MATRIX, ["champion"] * 3)


def test_challenger_falls_back_to_champion_and_missing_shadow_scores_nothing() -> None:
    models = {"champion": _model(3, 1.0)}
    assert score_rows(models, NAMES, MATRIX[:1], ["challenger"]) == [(1.5, 3, "champion")]
    assert score_rows(models, NAMES, MATRIX, ["shadow"] * 3) == []
