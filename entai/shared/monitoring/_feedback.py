"""The feedback join and the quality metrics of a binary classifier's windows.

Realised metrics come from labels joined by request id to logged predictions
(:class:`PredictionLog`, bounded, oldest rows evicted first). Until labels arrive, the
label-free estimate of a *calibrated* binary classifier's accuracy is the mean of
``max(p, 1 - p)`` over its predictions (:func:`expected_accuracy`): for a calibrated
score p the predicted class is right with probability max(p, 1 - p).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from entai.shared.core import ConfigError, InvalidInputError
from entai.shared.monitoring._profiles import decode_floats, encode_floats

__all__ = ["PredictionLog", "expected_accuracy", "log_loss", "roc_auc"]

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-15


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None with one class only."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(np.count_nonzero(y == 1))
    negatives = int(y.size) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(s)
    u = float(ranks[y == 1].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def log_loss(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def expected_accuracy(probabilities: npt.ArrayLike) -> float | None:
    """Label-free accuracy estimate of a calibrated binary classifier: mean max(p, 1-p)."""
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[np.isfinite(p)]
    return float(np.maximum(p, 1 - p).mean()) if p.size else None


class PredictionLog:
    """Bounded log of served predictions by request id, and the labels joined to them.

    The newest ``max_rows`` predictions are kept; a label for an evicted (or unknown)
    request id is not joined. A repeated label for a request id replaces the old one.
    Each row may carry its groups of the watched fairness attributes (``groups`` of
    :meth:`add`), which :meth:`labelled_groups` returns with the labels.

    Args:
        max_rows: Predictions kept.
    """

    _COLUMNS = ("request_id", "prediction", "window_id", "tag", "label")
    _GROUP = "group:"  # prefix of the group columns in the frame

    def __init__(self, max_rows: int = 10_000) -> None:
        if max_rows < 1:
            raise ConfigError("max_rows must be >= 1", details={"field": "max_rows"})
        self.max_rows = max_rows
        self._frame = pd.DataFrame({c: pd.Series(dtype=object) for c in self._COLUMNS})

    def __len__(self) -> int:
        return len(self._frame)

    def add(
        self,
        request_ids: Sequence[str],
        predictions: FloatArray,
        window_id: str,
        tags: Sequence[str | None],
        groups: Mapping[str, Sequence[str | None]] | None = None,
    ) -> None:
        """Log one window's predictions (a request id seen again is replaced).

        Args:
            groups: Per fairness attribute, each row's group (None: no value).
        """
        new = pd.DataFrame(
            {
                "request_id": pd.Series(request_ids, dtype=object).astype(str),
                "prediction": predictions.astype(np.float64),
                "window_id": window_id,
                "tag": pd.Series(tags, dtype=object),
                "label": np.nan,
            }
        )
        for column, values in (groups or {}).items():
            new[self._GROUP + column] = pd.Series(list(values), dtype=object)
        both = pd.concat([self._frame, new], ignore_index=True) if len(self._frame) else new
        both = both.drop_duplicates("request_id", keep="last")
        self._frame = both.iloc[-self.max_rows :].reset_index(drop=True)

    def join(self, labels: Mapping[str, int]) -> tuple[int, set[str]]:
        """Attach labels (0 or 1) to logged predictions.

        Returns:
            How many labels matched a logged prediction, and the ids of their windows.

        Raises:
            InvalidInputError: for a label other than 0 or 1.
        """
        incoming = pd.Series(labels, dtype=object)
        values = pd.to_numeric(incoming, errors="coerce")
        bad = incoming.index[~values.isin([0, 1])].tolist()
        if bad:
            raise InvalidInputError(
                f"labels must be 0 or 1; bad request id(s) {bad[:5]}",
                details={"field": "labels", "request_ids": [str(b) for b in bad[:20]]},
            )
        matched = self._frame["request_id"].isin(values.index.astype(str))
        if not matched.any():
            return 0, set()
        ids = self._frame.loc[matched, "request_id"]
        self._frame.loc[matched, "label"] = values.set_axis(values.index.astype(str))[ids].to_numpy(
            np.float64
        )
        return int(matched.sum()), set(self._frame.loc[matched, "window_id"])

    def labelled(self, window: str) -> tuple[FloatArray, FloatArray]:
        """Labels and predictions of one window's labelled rows."""
        rows = self._frame[(self._frame["window_id"] == window) & self._frame["label"].notna()]
        return rows["label"].to_numpy(np.float64), rows["prediction"].to_numpy(np.float64)

    def labelled_groups(
        self, window: str, columns: Sequence[str]
    ) -> tuple[FloatArray, FloatArray, dict[str, npt.NDArray[np.object_] | None]]:
        """Labels, predictions and each column's groups of one window's labelled rows.

        A column no row of the log carries comes back as None; a row without a value
        has the group None.
        """
        rows = self._frame[(self._frame["window_id"] == window) & self._frame["label"].notna()]
        groups: dict[str, npt.NDArray[np.object_] | None] = {}
        for column in columns:
            name = self._GROUP + column
            if name not in rows.columns:
                groups[column] = None
                continue
            values = rows[name].astype(object)
            groups[column] = values.where(values.notna(), None).to_numpy(dtype=object)
        labels = rows["label"].to_numpy(np.float64)
        return labels, rows["prediction"].to_numpy(np.float64), groups

    def erase(self, keys: Collection[str]) -> tuple[int, set[str]]:
        """Drop rows whose request id or tag is in ``keys``.

        Returns:
            Rows dropped, and every tag and request id of those rows (to erase samples).
        """
        wanted = list(keys)
        hit = self._frame["request_id"].isin(wanted) | self._frame["tag"].isin(wanted)
        gone = self._frame[hit]
        found = set(gone["request_id"]) | {t for t in gone["tag"] if isinstance(t, str)}
        self._frame = self._frame[~hit].reset_index(drop=True)
        return int(hit.sum()), found

    def to_dict(self) -> dict[str, Any]:
        """JSON-able checkpoint; predictions and labels (NaN = none yet) base64-encoded."""
        frame = self._frame
        return {
            "max_rows": self.max_rows,
            "request_id": frame["request_id"].tolist(),
            "window_id": frame["window_id"].tolist(),
            "tag": frame["tag"].astype(object).where(frame["tag"].notna(), None).tolist(),
            "prediction": encode_floats(frame["prediction"].to_numpy(np.float64)),
            "label": encode_floats(frame["label"].to_numpy(np.float64)),
            "groups": {
                name.removeprefix(self._GROUP): frame[name]
                .astype(object)
                .where(frame[name].notna(), None)
                .tolist()
                for name in frame.columns
                if name.startswith(self._GROUP)
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictionLog:
        """Restore a log checkpointed by :meth:`to_dict`."""
        log = cls(int(data["max_rows"]))
        if data["request_id"]:
            log._frame = pd.DataFrame(
                {
                    "request_id": pd.Series(data["request_id"], dtype=object),
                    "prediction": decode_floats(data["prediction"]),
                    "window_id": pd.Series(data["window_id"], dtype=object),
                    "tag": pd.Series(data["tag"], dtype=object),
                    "label": decode_floats(data["label"]),
                }
            )
            for column, values in data.get("groups", {}).items():  # absent in older ones
                log._frame[cls._GROUP + column] = pd.Series(values, dtype=object)
        return log
