"""score_rows: which loaded version answers each row, and the challenger fallback."""

from __future__ import annotations

import numpy as np
import pytest

from entai.deployments.model_runtime import LoadedModel
from entai.deployments.scoring import score_rows
from entai.shared.core import InvalidInputError, ModelOutputInvalidError

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


def test_a_request_feature_the_model_does_not_take_is_refused_naming_it() -> None:
    models = {"champion": _model(1, 1.0)}
    names = ("a", "b", "zz")
    matrix = np.hstack([MATRIX, np.ones((3, 1))])
    with pytest.raises(InvalidInputError) as caught:
        score_rows(models, names, matrix, ["champion"] * 3, ["zz"])
    assert caught.value.details["field"] == "request_features.zz"
    assert caught.value.details["inputs"] == ["a", "b"]
    known = score_rows(models, NAMES, MATRIX, ["champion"] * 3, ["b"])  # an input: fine
    assert [s for s, _, _ in known] == [1.5, 2.0, 4.0]


def test_a_model_answering_nan_or_infinity_is_model_output_invalid() -> None:
    for bad in (np.nan, np.inf):
        broken = LoadedModel(7, NAMES, lambda m, bad=bad: np.where(m[:, 0] > 1, bad, 0.5))
        with pytest.raises(ModelOutputInvalidError) as caught:
            score_rows({"champion": broken}, NAMES, MATRIX, ["champion"] * 3)
        assert caught.value.details == {"model_version": 7, "rows": 2}


def test_a_model_refusing_missing_values_is_invalid_input_naming_them() -> None:
    def strict(m: np.ndarray) -> np.ndarray:
        if np.isnan(m).any():
            raise ValueError("Input X contains NaN.")  # as scikit-learn says it
        return m[:, 0]

    model = LoadedModel(2, NAMES, strict)
    gappy = np.array([[1.0, np.nan], [2.0, 0.0]])
    with pytest.raises(InvalidInputError) as caught:
        score_rows({"champion": model}, NAMES, gappy, ["champion"] * 2)
    assert caught.value.details == {"field": "request_features", "missing_values": ["b"]}
