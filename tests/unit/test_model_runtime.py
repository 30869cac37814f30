"""ModelRuntime: loads what the aliases need, swaps atomically, reuses loaded versions."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from entai.deployments.model_runtime import LoadedModel, ModelRuntime, xgboost_model
from entai.shared.core import InvalidInputError, NotFoundError


class FakeWatcher:
    """In-memory registry: aliases and a revision; wait_for_change blocks on a condition."""

    def __init__(self, aliases: dict[str, int]) -> None:
        self.aliases = dict(aliases)
        self.revision = 1
        self._cond = threading.Condition()

    def move(self, alias: str, version: int) -> None:
        with self._cond:
            self.aliases[alias] = version
            self.revision += 1
            self._cond.notify_all()

    def subscribe(self, name: str) -> Mapping[str, Any]:
        return {"revision": self.revision, "aliases": dict(self.aliases)}

    def wait_for_change(
        self, name: str, known_revision: int, timeout_s: float
    ) -> Mapping[str, Any]:
        with self._cond:
            self._cond.wait_for(lambda: self.revision != known_revision, timeout=timeout_s)
            return self.subscribe(name)


def _model(version: int) -> LoadedModel:
    return LoadedModel(version, ("a", "b"), lambda m: m[:, 0] * version + m[:, 1])


def test_swap_loads_in_background_and_reuses_loaded_versions() -> None:
    loads: list[int] = []

    def loader(name: str, version: int) -> LoadedModel:
        loads.append(version)
        return _model(version)

    watcher = FakeWatcher({"champion": 1, "challenger": 2})
    runtime = ModelRuntime("m", watcher, loader, poll_timeout_s=0.5)
    assert runtime.versions() == {"champion": 1, "challenger": 2}
    before = runtime.snapshot()
    runtime.start()
    changed = threading.Event()
    watcher.move("champion", 2)  # promote the loaded challenger: no new load
    for _ in range(100):
        if runtime.versions()["champion"] == 2:
            changed.set()
            break
        threading.Event().wait(0.05)
    runtime.stop()
    assert changed.is_set()
    assert sorted(loads) == [1, 2]
    assert before["champion"].version == 1  # an in-flight snapshot is never mutated


def test_rows_are_reordered_to_the_models_inputs_and_missing_inputs_named() -> None:
    model = _model(3)
    matrix = np.array([[1.0, 10.0]])  # columns b, a
    assert model.score(("b", "a"), matrix).tolist() == [3 * 10.0 + 1.0]
    with pytest.raises(InvalidInputError, match=r"needs feature\(s\) \['b'\]"):
        model.score(("a", "c"), matrix)


def test_a_model_without_champion_is_refused() -> None:
    with pytest.raises(NotFoundError, match="champion"):
        ModelRuntime("m", FakeWatcher({"shadow": 1}), lambda n, v: _model(v))


def test_the_versions_hook_hears_the_first_load_and_every_swap() -> None:
    heard: list[dict[str, int]] = []
    swapped = threading.Event()

    def hook(versions: Mapping[str, int]) -> None:
        heard.append(dict(versions))
        if versions.get("champion") == 2:
            swapped.set()
        raise RuntimeError("a failing hook must not stop serving")

    watcher = FakeWatcher({"champion": 1})
    runtime = ModelRuntime(
        "m", watcher, lambda n, v: _model(v), poll_timeout_s=0.2, on_versions=hook
    )
    assert heard == [{"champion": 1}]
    runtime.start()
    watcher.move("champion", 2)
    assert swapped.wait(10.0)
    assert runtime.following  # the hook's errors did not stop the watch thread
    runtime.stop()
    assert runtime.versions() == {"champion": 2}


def test_an_xgboost_version_scores_like_its_booster_and_refuses_another_width() -> None:
    import xgboost as xgb

    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 3)).astype(np.float32)
    labels = (features[:, 0] + features[:, 2] > 0).astype(np.float32)
    train = xgb.DMatrix(features, label=labels, feature_names=["a", "b", "c"])
    booster = xgb.train({"objective": "binary:logistic"}, train, num_boost_round=5)
    model = xgboost_model(4, booster)
    assert model.feature_names == ("a", "b", "c")
    rows = features[:7].astype(np.float64)
    expected = booster.inplace_predict(features[:7])
    np.testing.assert_allclose(model.score(("a", "b", "c"), rows), expected, rtol=1e-6)
    swapped = rows[:, [2, 0, 1]]  # columns named in another order are put back in order
    np.testing.assert_allclose(model.score(("c", "a", "b"), swapped), expected, rtol=1e-6)
    with pytest.raises(InvalidInputError, match="takes 3 features, got 2") as caught:
        model.predict(rows[:, :2])
    assert caught.value.details["expected"] == 3
