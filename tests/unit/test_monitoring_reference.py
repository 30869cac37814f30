"""The monitoring section of the settings and the reference recorded in a version's lineage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring import (
    AlertPolicy,
    DriftConfig,
    MonitoringReference,
    ReferenceProfile,
    RetrainPolicy,
    WindowSpec,
)
from entai.shared.settings import load_settings


def _frame(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.poisson(2.0, n), "label": 1})


def test_monitoring_defaults_are_for_production_and_env_overrides_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings().monitoring
    assert default.window_count == 5000
    assert default.window_seconds == 3600.0
    assert default.retrain.auto_promote is False
    monkeypatch.setenv("ENTAI_MONITORING__WINDOW_COUNT", "200")
    monkeypatch.setenv("ENTAI_MONITORING__RETRAIN__MIN_INTERVAL_S", "0")
    small = load_settings().monitoring
    assert small.window()["count"] == 200
    assert small.retrain.min_interval_s == 0.0


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"window_count": None, "window_seconds": None}, "monitoring"),
        ({"alerts": {"warn_k": 3, "alert_k": 2}}, "monitoring.alerts"),
        ({"tick_interval_s": 0}, "monitoring.tick_interval_s"),
    ],
)
def test_invalid_monitoring_settings_name_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(monitoring=section)


def test_settings_build_the_monitors_own_policy_objects() -> None:
    m = load_settings().monitoring
    WindowSpec.from_dict(m.window())
    DriftConfig(**m.drift.model_dump())
    AlertPolicy(**m.alerts.model_dump())
    assert RetrainPolicy(**m.retrain.model_dump()).auto_promote is False


def test_reference_profiles_the_features_and_the_scores() -> None:
    frame = _frame()
    scores = np.linspace(0.0, 1.0, len(frame))
    ref = MonitoringReference.from_scores(frame, ["a", "b"], scores, reference_auc=0.8)
    profile = ReferenceProfile.from_dict(ref.profile)
    assert sorted(profile.columns) == ["a", "b", "prediction"]
    assert profile.n_rows == len(frame)
    assert MonitoringReference.from_dict(ref.to_dict()) == ref
    kwargs = ref.registration(load_settings(monitoring={"window_count": 200}).monitoring)
    assert kwargs["feature_columns"] == ["a", "b"]
    assert kwargs["window"]["count"] == 200
    assert kwargs["reference_auc"] == 0.8


def test_reference_refuses_missing_columns_misaligned_scores_and_bad_documents() -> None:
    frame = _frame()
    with pytest.raises(InvalidInputError, match=r"lack feature column\(s\) \['c'\]"):
        MonitoringReference.from_scores(frame, ["a", "c"], np.zeros(len(frame)))
    with pytest.raises(InvalidInputError, match="3 scores for 500"):
        MonitoringReference.from_scores(frame, ["a"], np.zeros(3))
    with pytest.raises(InvalidInputError, match="malformed"):
        MonitoringReference.from_dict({"feature_columns": ["a"]})


def test_a_references_policy_overrides_the_platform_settings_for_that_version_only() -> None:
    frame = _frame()
    ref = MonitoringReference.from_scores(frame, ["a", "b"], np.linspace(0, 1, len(frame)))
    policy = {
        "window_count": 200,
        "window_seconds": None,
        "drift": {"ks_p": 0.01},
        "retrain": {"min_interval_s": 0.0},
    }
    platform = load_settings().monitoring
    own = ref.with_policy(policy)
    assert MonitoringReference.from_dict(own.to_dict()) == own
    kwargs = own.registration(platform)
    assert kwargs["window"]["count"] == 200 and kwargs["window"]["seconds"] is None
    # a partial section keeps the platform's other values
    assert kwargs["drift_config"]["ks_p"] == 0.01
    assert kwargs["drift_config"]["chi2_p"] == platform.drift.chi2_p
    assert kwargs["retrain_policy"]["min_interval_s"] == 0.0
    assert kwargs["retrain_policy"]["drift_windows"] == platform.retrain.drift_windows
    # without a policy the platform's settings hold, and the document has no policy key
    assert ref.registration(platform)["window"]["count"] == platform.window_count
    assert "policy" not in ref.to_dict()


def test_a_policy_names_what_it_cannot_set_or_sets_wrongly() -> None:
    ref = MonitoringReference.from_scores(_frame(), ["a"], np.zeros(500))
    with pytest.raises(InvalidInputError, match=r"\['tick_interval_s'\] cannot be set per model"):
        ref.with_policy({"tick_interval_s": 1.0})
    bad = ref.with_policy({"drift": {"ks_p": 2.0}})
    with pytest.raises(InvalidInputError, match=r"drift\.ks_p"):
        bad.registration(load_settings().monitoring)
