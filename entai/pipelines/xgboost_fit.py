"""The training worker's side of an XGBoost run: build the DMatrices, boost, time both.

A one-worker run (``runner="task"``) is one Ray task, :func:`train_task`, in a worker
process that is often new. Ray imports the task's module there before it runs, so this
module imports only numpy (xgboost inside the functions). The task used to live in
``entai.pipelines.training._train``, whose package imports lineage, the registry's
artifacts and the drift statistics: 0.8 s of a cold worker's start-up, a fifth of
``bench/train.py``'s fixed time (``docs/benchmarks.md``, Training, session 20). Ray
Train's workers (``_train_loop_per_worker``) use :func:`fit_booster` too.

Even so a cold worker spends most of a one-worker run's start-up in ``import xgboost``
(1.5-1.9 s here, most of it scikit-learn, which ``xgboost.compat`` imports eagerly).
The driver therefore sends :func:`load_xgboost` first, hands the data over while the
worker imports, and sends :func:`train_task` after it (see ``_fit_in_task``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Evals", "fit_booster", "frame_arrays", "load_xgboost", "train_task"]

Evals = dict[str, dict[str, list[float]]]
"""Per-round metric curves, ``{"train": {"auc": [...]}, "valid": {...}}``."""


def frame_arrays(config: dict[str, Any], frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``frame``'s feature columns (float32, in ``config``'s order) and its labels."""
    x = frame[config["features"]].to_numpy(dtype=np.float32)
    return x, frame[config["label"]].to_numpy(dtype=np.float32)


def fit_booster(
    config: dict[str, Any], arrays: Callable[[str], tuple[np.ndarray, np.ndarray]]
) -> tuple[Any, Evals, dict[str, float]]:
    """The training loop both runners share: build the DMatrices, train, time both.

    Returns:
        The booster, its per-round curves, and the final metrics with the worker's
        ``worker_data_s`` and ``worker_train_s``.
    """
    import xgboost

    features: list[str] = config["features"]
    started = time.perf_counter()
    matrices = {}
    for split in ("train", "valid"):
        x, y = arrays(split)
        matrices[split] = xgboost.DMatrix(x, label=y, feature_names=features)
    built = time.perf_counter()
    evals_result: Evals = {}
    booster = xgboost.train(
        config["params"],
        matrices["train"],
        num_boost_round=config["num_boost_round"],
        evals=[(matrices["train"], "train"), (matrices["valid"], "valid")],
        evals_result=evals_result,
        verbose_eval=False,
    )
    final: dict[str, float] = {
        f"{split}_{metric}": float(curve[-1])
        for split, metrics in evals_result.items()
        for metric, curve in metrics.items()
    }
    final["worker_data_s"] = built - started
    final["worker_train_s"] = time.perf_counter() - built
    return booster, evals_result, final


def _this_worker() -> str:
    """This process on this machine: ``<host>/<pid>``."""
    return f"{socket.gethostname()}/{os.getpid()}"


def load_xgboost() -> str:
    """The single-worker runner's first Ray task: import xgboost; this worker's name."""
    import xgboost  # noqa: F401 - the import is the task

    return _this_worker()


def train_task(
    config: dict[str, Any], train: Any, valid: Any, loaded: str | None = None
) -> tuple[bytes, Evals, dict[str, float], bool]:
    """The single-worker runner's Ray task: train on the whole data, return the model.

    Args:
        config: Features, label, parameters, rounds, transport.
        train: The training shard (``{"x", "y"}`` arrays, resolved from its object
            ref by Ray) or, with the ``ray_data`` transport, a Ray Dataset.
        valid: The validation shard, likewise.
        loaded: :func:`load_xgboost`'s result. The driver passes its object ref only
            so that Ray starts this task after it; Ray then leases the worker that
            became idle last, the one that has just imported xgboost. Another worker
            would train the same model, after its own import.

    Returns:
        The booster serialised as UBJSON, its curves, the final metrics and timings,
        and whether this worker is the one that ran :func:`load_xgboost`.
    """
    data = {"train": train, "valid": valid}

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        if config["transport"] == "object_store":
            shard: dict[str, np.ndarray] = data[split]
            return shard["x"], shard["y"]
        return frame_arrays(config, data[split].materialize().to_pandas())

    booster, evals_result, final = fit_booster(config, arrays)
    raw = bytes(booster.save_raw(raw_format="ubj"))
    return raw, evals_result, final, loaded == _this_worker()
