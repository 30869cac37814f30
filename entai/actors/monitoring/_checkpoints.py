"""Where the DriftMonitor keeps its state in the lake, and how it reads it back.

Under ``<lake>/monitoring/``: per model ``<model>/state.json`` (the whole
:class:`ModelWatch`, rewritten atomically after every change), per ranker watched for
fairness ``<model>/ranker.json`` (its :class:`RankerWatch`), and
``<model>/reference-<id>.json`` (the immutable reference profile, named by its hash),
and ``retrain_requests/<request_id>.json`` for the retraining workflow.
"""

from __future__ import annotations

import json
import logging

import pyarrow.fs as pafs

from entai.shared.core import EntaiError
from entai.shared.data import Lake
from entai.shared.monitoring import ModelWatch, RankerWatch, RetrainRequest, WatchLimits

__all__ = ["RETRAIN_DIR", "MonitorCheckpoints"]

logger = logging.getLogger(__name__)

RETRAIN_DIR = "retrain_requests"


class MonitorCheckpoints:
    """Reads and writes the monitor's files in ``lake``.

    Args:
        lake: The data lake.
        limits: Memory bounds of the watches it restores.
    """

    def __init__(self, lake: Lake, limits: WatchLimits) -> None:
        self.lake = lake
        self._limits = limits

    def __repr__(self) -> str:
        return f"MonitorCheckpoints(lake={self.lake.root!r})"

    def _state_path(self, model: str) -> str:
        return self.lake.path("monitoring", model, "state.json")

    def _reference_path(self, model: str, reference_id: str) -> str:
        return self.lake.path("monitoring", model, f"reference-{reference_id}.json")

    def load(self) -> dict[str, ModelWatch]:
        """Every model's last checkpoint; unreadable ones are logged and skipped."""
        models: dict[str, ModelWatch] = {}
        selector = pafs.FileSelector(self.lake.path("monitoring"), allow_not_found=True)
        for info in self.lake.fs.get_file_info(selector):
            path = f"{info.path}/state.json"
            if info.type != pafs.FileType.Directory or not self.lake.exists(path):
                continue
            try:
                state = self.lake.read_json(path)
                ref_path = self._reference_path(state["name"], state["config"]["reference_id"])
                reference = self.lake.read_json(ref_path)
                watch = ModelWatch.from_dict(state, reference, self._limits)
            except (EntaiError, KeyError, TypeError, ValueError) as exc:
                logger.error(
                    "monitoring checkpoint not loaded", extra={"path": path, "error": repr(exc)}
                )
                continue
            models[watch.name] = watch
        if models:
            logger.info("monitoring state reloaded", extra={"models": sorted(models)})
        return models

    def load_rankers(self) -> dict[str, RankerWatch]:
        """Every ranker's last checkpoint; unreadable ones are logged and skipped."""
        rankers: dict[str, RankerWatch] = {}
        selector = pafs.FileSelector(self.lake.path("monitoring"), allow_not_found=True)
        for info in self.lake.fs.get_file_info(selector):
            path = f"{info.path}/ranker.json"
            if info.type != pafs.FileType.Directory or not self.lake.exists(path):
                continue
            try:
                watch = RankerWatch.from_dict(
                    self.lake.read_json(path), max_windows=self._limits.max_windows
                )
            except (EntaiError, KeyError, TypeError, ValueError) as exc:
                logger.error(
                    "ranker checkpoint not loaded", extra={"path": path, "error": repr(exc)}
                )
                continue
            rankers[watch.name] = watch
        return rankers

    def save_ranker(self, watch: RankerWatch) -> None:
        """Checkpoint one ranker's state (atomic write)."""
        data = json.dumps(watch.to_dict(), separators=(",", ":"), default=str)
        self.lake.write_bytes(
            self.lake.path("monitoring", watch.name, "ranker.json"), data.encode()
        )

    def save(self, watch: ModelWatch) -> None:
        """Checkpoint one model's whole state (atomic write)."""
        data = json.dumps(watch.to_dict(), separators=(",", ":"), default=str)
        self.lake.write_bytes(self._state_path(watch.name), data.encode())

    def save_reference(self, model: str, reference_id: str, text: str) -> None:
        """Write a reference profile (JSON text) under its id."""
        self.lake.write_bytes(self._reference_path(model, reference_id), text.encode())

    def save_retrain_request(self, request: RetrainRequest) -> None:
        """Hand a request to the retraining workflow."""
        path = self.lake.path("monitoring", RETRAIN_DIR, f"{request.request_id}.json")
        self.lake.write_json(path, request.to_dict())
