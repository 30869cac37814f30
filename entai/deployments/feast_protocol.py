"""Feast's feature-server answer to ``/get-online-features``, from entai's online read.

Feast's Python SDK (a ``type: remote`` online store) parses this answer into its
``OnlineResponse``; the shape follows Feast 0.67's feature server:

- the join keys come first (the request's entity keys that are join keys of the views
  read, in request order), their values echoed, every status ``PRESENT`` and every
  timestamp the zero instant;
- then one result per feature, named ``view__feature`` when ``full_feature_names`` is
  true, else the feature name alone (two views' features of one name are refused then,
  as Feast refuses them);
- statuses are Feast's names; event timestamps are RFC 3339 in UTC with a ``Z``,
  fractional seconds only as precise as needed (none, 3, 6 digits), and the zero
  instant ``1970-01-01T00:00:00Z`` where no row was found;
- non-finite floats are the strings ``NaN``, ``Infinity``, ``-Infinity`` (JSON has no
  such numbers; Feast writes protobuf's JSON names);
- a list-valued feature's value is a JSON array (``[]`` for an empty list, ``null``
  for no value);
- with ``include_feature_view_version_metadata``, ``metadata.feature_view_metadata``
  names each view read. entai's views carry no version number, so ``version`` is left
  out, as Feast leaves out a zero version.

entai's own ``/v1/features/online`` answer is shaped in :mod:`entai.deployments.platform`.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from entai.deployments.platform import OnlineRead
from entai.deployments.schemas import FeastOnlineFeaturesRequest
from entai.shared.core import InvalidInputError

__all__ = ["FEAST_ZERO_TIME", "feast_response", "feast_time", "feast_value"]

FEAST_ZERO_TIME = "1970-01-01T00:00:00Z"
_PRESENT = "PRESENT"


def feast_time(ts: datetime | None) -> str:
    """``ts`` as Feast writes an event timestamp (RFC 3339, UTC, ``Z``).

    ``None`` (no row) is the zero instant, as Feast writes an unset timestamp; a naive
    datetime is taken as UTC.
    """
    if ts is None:
        return FEAST_ZERO_TIME
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ts = ts.astimezone(UTC)
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    micros = ts.microsecond
    if micros == 0:
        return f"{base}Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def feast_value(value: Any) -> Any:
    """A value as Feast's JSON carries it: non-finite floats become their names.

    A list-valued feature's value is a JSON array of its elements.
    """
    if isinstance(value, list):
        return [feast_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return value


def feast_response(read: OnlineRead, request: FeastOnlineFeaturesRequest) -> dict[str, Any]:
    """The read as Feast's feature server answers ``/get-online-features``.

    Raises:
        InvalidInputError: without ``full_feature_names``, two views give features of
            one name (Feast's name collision); the message names the features.
    """
    full = request.full_feature_names
    names = [f"{c.view}__{c.feature}" if full else c.feature for c in read.columns]
    collided = sorted(n for n, count in Counter((*read.join_keys, *names)).items() if count > 1)
    if collided:
        raise InvalidInputError(
            f"feature names {collided} are given by more than one feature view or join key; "
            "set full_feature_names to true",
            details={"field": "full_feature_names", "features": collided},
        )
    rows = len(next(iter(read.entities.values())))
    zero_times = [FEAST_ZERO_TIME] * rows
    results: list[dict[str, Any]] = [
        {
            "values": list(read.entities[key]),
            "statuses": [_PRESENT] * rows,
            "event_timestamps": zero_times,
        }
        for key in read.join_keys
    ]
    results += (
        {
            "values": [feast_value(v) for v in c.values],
            "statuses": c.statuses,
            "event_timestamps": [feast_time(ts) for ts in c.event_timestamps],
        }
        for c in read.columns
    )
    metadata: dict[str, Any] = {"feature_names": [*read.join_keys, *names]}
    if request.include_feature_view_version_metadata:
        metadata["feature_view_metadata"] = [{"name": view} for view in read.views]
    return {"metadata": metadata, "results": results}
