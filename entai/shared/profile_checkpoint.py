"""JSON forms of column profiles and window accumulators (checkpoints).

:meth:`entai.shared.profiles.DatasetProfile.to_dict` and
:meth:`entai.shared.profiles.WindowAccumulator.to_dict` delegate here, so the profile
module keeps to the statistics. An accumulator's checkpoint includes its generator
state and its sampling keys and tags, so a restored accumulator continues exactly as
the original would have. Float arrays in accumulator checkpoints are base64 of their
little-endian float64 bytes (:func:`encode_floats`): exact, and far cheaper to write
than decimal lists; plain lists are read too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entai.shared.errors import InvalidInputError
from entai.shared.profiles import (
    CategoricalColumnProfile,
    ColumnProfile,
    NumericColumnProfile,
    WindowAccumulator,
    _CategoricalState,
    _NumericState,
    _object_array,
)

__all__ = [
    "accumulator_from_dict",
    "accumulator_to_dict",
    "column_from_dict",
    "column_to_dict",
    "decode_floats",
    "encode_floats",
]

_F8 = np.dtype("<f8")


def encode_floats(values: npt.ArrayLike) -> str:
    """A float array as base64 of its little-endian float64 bytes (exact)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=_F8).tobytes()).decode("ascii")


def decode_floats(data: str | list[float]) -> npt.NDArray[np.float64]:
    """The inverse of :func:`encode_floats`; a plain list of numbers is accepted too."""
    if isinstance(data, str):
        return np.frombuffer(base64.b64decode(data), dtype=_F8).astype(np.float64)
    return np.asarray(data, dtype=np.float64)


def column_to_dict(col: ColumnProfile) -> dict[str, Any]:
    """A column profile as a JSON-able dict (categories must be str, int, float or bool)."""
    if isinstance(col, NumericColumnProfile):
        return {
            "type": "numeric",
            "values": col.values.tolist(),
            "n_values": col.n_values,
            "n_null": col.n_null,
            "mean": col.mean,
            "m2": col.m2,
        }
    return {
        "type": "categorical",
        "categories": col.categories.tolist(),
        "counts": col.counts.tolist(),
        "n_null": col.n_null,
    }


def column_from_dict(data: Mapping[str, Any]) -> ColumnProfile:
    """Rebuild a column profile written by :func:`column_to_dict`.

    Raises:
        ValueError: for an unknown profile type (callers wrap it in InvalidInputError).
    """
    if data["type"] == "numeric":
        return NumericColumnProfile(
            values=np.sort(np.asarray(data["values"], dtype=np.float64)),
            n_values=int(data["n_values"]),
            n_null=int(data["n_null"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
        )
    if data["type"] == "categorical":
        return CategoricalColumnProfile(
            categories=_object_array(data["categories"]),
            counts=np.asarray(data["counts"], dtype=np.int64),
            n_null=int(data["n_null"]),
        )
    raise ValueError(f"unknown column profile type {data['type']!r}")


def accumulator_to_dict(acc: WindowAccumulator) -> dict[str, Any]:
    """JSON-able checkpoint of an accumulator, including its generator state."""
    return {
        "sample_size": acc.sample_size,
        "seed": acc.seed,
        "max_categories": acc.max_categories,
        "n_rows": acc.n_rows,
        "rng_state": acc._rng.bit_generator.state,
        "order": list(acc._order),
        "numeric": {
            name: {
                "keys": encode_floats(s.keys),
                "values": encode_floats(s.values),
                "tags": s.tags.tolist(),
                "n_values": s.n_values,
                "n_null": s.n_null,
                "mean": s.mean,
                "m2": s.m2,
            }
            for name, s in acc._numeric.items()
        },
        "categorical": {
            name: {
                "categories": c.counts.index.tolist(),
                "counts": c.counts.tolist(),
                "n_null": c.n_null,
            }
            for name, c in acc._categorical.items()
        },
    }


def accumulator_from_dict(data: Mapping[str, Any]) -> WindowAccumulator:
    """Restore an accumulator checkpointed by :func:`accumulator_to_dict`.

    Checkpoints written before tags existed restore with every tag None.

    Raises:
        InvalidInputError: when the checkpoint is malformed.
    """
    try:
        acc = WindowAccumulator(
            sample_size=data["sample_size"],
            seed=int(data["seed"]),
            max_categories=int(data["max_categories"]),
        )
        acc.n_rows = int(data["n_rows"])
        acc._rng.bit_generator.state = dict(data["rng_state"])
        acc._order = [str(c) for c in data["order"]]
        for name, s in data["numeric"].items():
            values = decode_floats(s["values"])
            acc._numeric[name] = _NumericState(
                keys=decode_floats(s["keys"]),
                values=values,
                tags=_object_array(s.get("tags", [None] * values.size)),
                n_values=int(s["n_values"]),
                n_null=int(s["n_null"]),
                mean=float(s["mean"]),
                m2=float(s["m2"]),
            )
        for name, c in data["categorical"].items():
            counts = pd.Series(c["counts"], index=_object_array(c["categories"]), dtype=np.int64)
            acc._categorical[name] = _CategoricalState(counts=counts, n_null=int(c["n_null"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"accumulator checkpoint is malformed: {exc!r}", details={"field": "checkpoint"}
        ) from exc
    return acc
