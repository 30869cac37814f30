"""Feast's own Python SDK as an entai client; run with the Feast virtualenv's python.

Feast's dependencies clash with entai's lock, so this script runs in a virtualenv of
its own (``test_feast_sdk.py`` makes it). It reads one JSON object on stdin:

- ``url``: entai's HTTP API, the ``path`` of a ``type: remote`` online store;
- ``home``: a scratch directory for Feast's file registry;
- ``definitions``: entai's entities, feature views and feature services, mirrored
  into Feast definitions and applied to that registry (Feast resolves a feature
  service by name from its registry);
- ``calls``: ``{"name", "auth", "features" or "feature_service", "entity_rows",
  "full_feature_names", "include_feature_view_version_metadata"}``; ``auth`` is
  ``kubernetes`` (the token as ``user_token``), ``oidc`` (the token read from the
  environment variable ``ENTAI_TOKEN`` through ``token_env_var``) or ``none``.

It prints one JSON object: per call name, ``{"columns": OnlineResponse.to_dict()}``,
or ``{"error": "<text>"}`` when the SDK raised.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast import types as feast_types
from feast.value_type import ValueType

TOKEN_ENV = "ENTAI_TOKEN"
_DTYPES = {
    "int64": feast_types.Int64,
    "float64": feast_types.Float64,
    "string": feast_types.String,
    "bool": feast_types.Bool,
    "timestamp": feast_types.UnixTimestamp,
}
_KEY_TYPES = {"int64": ValueType.INT64, "string": ValueType.STRING}


def _auth(kind: str) -> dict[str, Any]:
    if kind == "kubernetes":
        return {"type": "kubernetes", "user_token": os.environ[TOKEN_ENV]}
    if kind == "oidc":
        return {"type": "oidc", "token_env_var": TOKEN_ENV}
    return {"type": "no_auth"}


def _store(url: str, home: Path, auth: str) -> FeatureStore:
    config = RepoConfig(
        project="entai",
        provider="local",
        registry=str(home / "registry.db"),
        online_store={"type": "remote", "path": url},
        auth=_auth(auth),
        entity_key_serialization_version=3,
    )
    return FeatureStore(config=config, repo_path=str(home))


def _definitions(spec: dict[str, Any], home: Path) -> list[Any]:
    entities = {
        e["name"]: Entity(
            name=e["name"], join_keys=[e["join_key"]], value_type=_KEY_TYPES[e["value_type"]]
        )
        for e in spec["entities"]
    }
    views = {
        v["name"]: FeatureView(
            name=v["name"],
            entities=[entities[e] for e in v["entities"]],
            schema=[Field(name=f["name"], dtype=_DTYPES[f["dtype"]]) for f in v["fields"]],
            source=FileSource(
                path=str(home / f"{v['name']}.parquet"), timestamp_field="event_timestamp"
            ),
            ttl=timedelta(seconds=v["ttl_s"]) if v["ttl_s"] is not None else None,
            online=True,
        )
        for v in spec["views"]
    }
    services = [
        FeatureService(name=s["name"], features=[views[v] for v in s["views"]])
        for s in spec["services"]
    ]
    return [*entities.values(), *views.values(), *services]


def main() -> None:
    request = json.load(sys.stdin)
    home = Path(request["home"])
    home.mkdir(parents=True, exist_ok=True)
    stores: dict[str, FeatureStore] = {}
    out: dict[str, Any] = {}
    for call in request["calls"]:
        store = stores.get(call["auth"])
        if store is None:
            store = stores[call["auth"]] = _store(request["url"], home, call["auth"])
            if len(stores) == 1:
                store.apply(_definitions(request["definitions"], home))
        features: Any = (
            store.get_feature_service(call["feature_service"])
            if "feature_service" in call
            else call["features"]
        )
        try:
            response = store.get_online_features(
                features=features,
                entity_rows=call["entity_rows"],
                full_feature_names=call.get("full_feature_names", False),
                include_feature_view_version_metadata=call.get(
                    "include_feature_view_version_metadata", False
                ),
            )
        except Exception as exc:  # noqa: BLE001 - the test asserts on what the SDK raised
            out[call["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[call["name"]] = {"columns": response.to_dict()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
