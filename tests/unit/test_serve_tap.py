"""Prediction tap, error table and Serve config: pure checks, no cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.serve.exceptions import BackPressureError

from entai.deployments.app import AppArgs
from entai.deployments.http_errors import install_error_handlers
from entai.deployments.tap import PredictionTap, ServedBatch
from entai.shared.data import Lake

ROOT = Path(__file__).parents[2]


def _batch(rid: str, aliases: list[str], versions: list[int]) -> ServedBatch:
    n = len(aliases)
    return ServedBatch(
        request_id=rid,
        model="m",
        aliases=aliases,
        versions=versions,
        entity_keys=[f"i:{i}" for i in range(n)],
        feature_names=("a", "b"),
        features=np.arange(2 * n, dtype=float).reshape(n, 2),
        predictions=[0.5] * n,
    )


def test_tap_logs_everything_and_sends_only_served_rows_to_the_monitor(tmp_path: Path) -> None:
    sent: list[tuple[str, dict[str, list[Any]]]] = []
    tap = PredictionTap(Lake(str(tmp_path)), lambda m, b, cols: sent.append((m, cols)))
    tap.submit(_batch("r1", ["champion", "challenger"], [1, 2]))
    tap.submit(_batch("r1", ["shadow", "shadow"], [3, 3]))
    assert tap.flush() == 4
    log = pd.concat(pd.read_parquet(p) for p in tmp_path.rglob("*.parquet"))
    assert sorted(log["alias"]) == ["challenger", "champion", "shadow", "shadow"]
    assert log.loc[log["alias"] == "shadow", "b"].tolist() == [1.0, 3.0]
    ((model, columns),) = sent
    assert model == "m"
    assert columns["version"] == [1, 2]
    assert columns["prediction"] == [0.5, 0.5]
    assert tap.flush() == 0


def test_tap_drops_instead_of_growing_without_bound(tmp_path: Path) -> None:
    tap = PredictionTap(Lake(str(tmp_path)), None, max_buffered=2)
    for i in range(5):
        tap.submit(_batch(f"r{i}", ["champion"], [1]))
    assert tap.dropped == 3
    assert tap.flush() == 2


def test_serve_backpressure_becomes_the_error_envelope() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise BackPressureError(num_queued_requests=9, max_queued_requests=8)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/busy")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "overloaded"
    assert response.headers["retry-after"] == "1"
    assert client.get("/boom").json()["error"]["code"] == "internal_error"


def test_serve_config_args_build_the_typed_app_args() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load((ROOT / "cluster" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "entai.deployments.app:build_app"
    args = AppArgs.model_validate(app.args)
    assert args.model_name == "purchase_propensity"
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"Ingress"}
    assert args.score_in_ingress
    assert all(d.autoscaling_config for d in deployments.values())
    assert schema.http_options.host == "127.0.0.1"


def test_a_flush_of_batches_with_different_columns_fills_the_missing_ones_with_nan(
    tmp_path: Path,
) -> None:
    """Runs of batches with the same columns are copied together; each row keeps its
    own values, and a feature its batch lacks is NaN (shadow rows, other layouts)."""
    layouts = [("a", "b"), ("a", "b"), ("b", "c"), ("a", "b"), ("c",), ("c",)]
    batches = []
    for i, names in enumerate(layouts):
        n = 1 + i % 3
        batches.append(
            ServedBatch(
                request_id=f"r{i}",
                model="m",
                aliases=["shadow" if i == 3 else "champion"] * n,
                versions=[i] * n,
                entity_keys=[f"k{i}.{j}" for j in range(n)],
                feature_names=names,
                features=np.arange(len(names) * n, dtype=np.float32).reshape(n, len(names))
                + 10 * i,
                predictions=[i + j / 10 for j in range(n)],
                ts=1000.0 + i,
            )
        )
    expected: dict[str, list[Any]] = {
        "request_id": [], "ts": [], "model": [], "alias": [], "version": [],
        "entity_key": [], "a": [], "b": [], "c": [], "score": [],
    }  # fmt: skip
    for b in batches:
        for j in range(len(b.predictions)):
            for column, value in (
                ("request_id", b.request_id), ("ts", b.ts), ("model", b.model),
                ("alias", b.aliases[j]), ("version", b.versions[j]),
                ("entity_key", b.entity_keys[j]), ("score", b.predictions[j]),
            ):  # fmt: skip
                expected[column].append(value)
            for name in ("a", "b", "c"):
                row = b.features[j]
                value = float(row[b.feature_names.index(name)]) if name in b.feature_names else None
                expected[name].append(value)
    tap = PredictionTap(Lake(str(tmp_path)), None, prediction_column="score")
    for b in batches:
        tap.submit(b)
    assert tap.flush() == sum(len(b.predictions) for b in batches)
    (written,) = list((tmp_path / "predictions" / "model=m").rglob("*.parquet"))
    table = pd.read_parquet(written)
    assert list(table.columns) == list(expected)
    got = table.astype(object).where(table.notna(), None).to_dict(orient="list")
    assert got == expected
