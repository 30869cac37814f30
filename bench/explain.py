"""Explanation overhead: ``POST /v1/explain`` against ``POST /v1/predict``, same platform, same run.

    .venv/bin/python bench/explain.py [--seconds 20] [--rounds 2] [--concurrency 8]
                                      [--mode haproxy] [--store redis]

One child process starts a local Ray (num_cpus=2, no dashboard), the governance, shard
and registry actors, and the Serve application with the shipped graph (the Ingress
scores in-process). By default in the configuration the cluster manifests ship
(``bench/serve.py``'s ``haproxy/redis/ingress``: Serve's throughput mode behind HAProxy,
the Ingress reading Redis in-process); ``--mode throughput --store memory`` is the
laptop's (``entai up``). It serves one XGBoost model (50 trees of depth 5 over the
demo's 12 features, as ``bench/serve.py``). The load is a closed loop at concurrency 8
(aiohttp, loopback), one entity per request, alternating ``predict`` and ``explain``
phases ``--rounds`` times so that a change in the machine's load hits both alike; each
endpoint's figures are over all its phases. An explain answers, per row, the 12
contributions (exact TreeSHAP), base value, margin, and each value with its view,
status and event time.

The last line is JSON: each endpoint's requests/s, p50 and p99, and "ratio" = predict
requests/s / explain requests/s (the issue's bar, explain >= 50% of predict's
throughput, is ratio <= 2); "p99_ratio" = explain p99 / predict p99.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

_SPEC = importlib.util.spec_from_file_location("bench_serve", Path(__file__).with_name("serve.py"))
assert _SPEC is not None and _SPEC.loader is not None
bench_serve: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_serve)  # the serving benchmark's model, features and load


def _merge(phases: list[dict[str, Any]], latencies: list[np.ndarray]) -> dict[str, Any]:
    lat = np.concatenate(latencies) if latencies else np.zeros(0)
    seconds = sum(p["seconds"] for p in phases)
    return {
        "requests": len(lat),
        "errors": int(sum(p["errors"] for p in phases)),
        "rps": round(len(lat) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if len(lat) else None,
        "phases_rps": [p["rps"] for p in phases],
    }


async def _phase(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> Any:
    """One closed-loop phase; its summary and raw latencies (ms)."""
    import time

    import aiohttp

    latencies: list[float] = []
    errors = 0
    rng = np.random.default_rng(2)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                u = int(rng.integers(bench_serve.USERS))
                c = bench_serve.CATS[int(rng.integers(3))]
                body = {"entities": {"user_id": [u], "category": [c]}}
                start = time.perf_counter()
                async with client.post(url, json=body, headers=headers) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000
    summary = {"seconds": took, "errors": errors, "rps": round(len(lat) / took, 1)}
    return summary, lat


def _check_explanation(url: str, headers: dict[str, str]) -> None:
    """One explain answered as specified (contributions sum to the margin), before timing."""
    import httpx

    body = {"entities": {"user_id": [1], "category": [bench_serve.CATS[0]]}}
    answer = httpx.post(url, json=body, headers=headers, timeout=30).json()
    (row,) = answer["explanations"]
    total = row["base_value"] + sum(f["contribution"] for f in row["features"])
    if abs(total - row["margin"]) > 1e-4 or row["method"] != "tree_shap":
        raise RuntimeError(f"explanation does not add up: {row}")


def run_child(seconds: float, rounds: int, concurrency: int, store: str) -> dict[str, Any]:
    """Inside the child: start Ray, deploy, alternate predict and explain, tear down."""
    import mlflow
    import mlflow.xgboost
    import ray
    from ray import serve

    from entai.actors.backends import configure_mlflow
    from entai.actors.features import OnlineFeatureClient, start_shards
    from entai.actors.governance import start_governance
    from entai.actors.models import start_registry
    from entai.demo import features as demo
    from entai.deployments.app import AppArgs, build_app
    from entai.shared.features import FeatureRow, entity_key
    from entai.shared.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="entai-bench-explain-"))
    port = bench_serve._free_port()
    online = bench_serve._store_settings(store)
    settings = load_settings(home=work, serve={"port": port}, online_store=online).resolved()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace=settings.ray.namespace)  # fmt: skip
    try:
        ns = settings.ray.namespace
        governance = start_governance(settings, ns)
        ray.get(governance.__ray_ready__.remote(), timeout=120)
        admin = Path(settings.security.token_file).read_text().strip()
        token, _ = ray.get(governance.create_token.remote(admin, "app"), timeout=60)
        now = datetime.now(UTC)
        uc = [f.name for f in demo.user_category_stats.schema]
        us = [f.name for f in demo.user_stats.schema]
        rows = []
        for (u, c), values in bench_serve._features().items():
            rows.append(FeatureRow("user_category_stats", entity_key({"user_id": u, "category": c}),
                                   dict(zip(uc, values[:6].tolist(), strict=True)),
                                   now - timedelta(hours=1), now))  # fmt: skip
            if c == bench_serve.CATS[0]:
                rows.append(FeatureRow("user_stats", entity_key({"user_id": u}),
                                       dict(zip(us, values[6:].tolist(), strict=True)),
                                       now - timedelta(hours=1), now))  # fmt: skip
        OnlineFeatureClient(start_shards(settings, ns)).write(rows)
        registry = start_registry(settings.mlflow, ns)
        configure_mlflow(settings.mlflow)
        booster = bench_serve._train(work / "model.ubj")
        with mlflow.start_run():
            logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
        info = ray.get(
            registry.register.remote(logged.model_uri, bench_serve.MODEL, registrant="bench"),
            timeout=120,
        )
        ray.get(registry.set_alias.remote(bench_serve.MODEL, "champion", info.version,
                                          by="b", reason="b"))  # fmt: skip
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = AppArgs(
            model_name=bench_serve.MODEL,
            feature_service=demo.purchase_propensity.name,
            definitions_module=demo.__name__,
            settings=settings,
            shadow=False,
        )
        serve.run(build_app(args), name="entai", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        bench_serve._wait_http(f"{base}/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        urls = {
            "predict": f"{base}/v1/predict/{bench_serve.MODEL}",
            "explain": f"{base}/v1/explain/{bench_serve.MODEL}",
        }
        _check_explanation(urls["explain"], headers)
        for url in urls.values():  # warm-up
            asyncio.run(_phase(url, headers, 3, concurrency))
        phases: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
        latencies: dict[str, list[np.ndarray]] = {k: [] for k in urls}
        for _ in range(rounds):
            for kind, url in urls.items():
                summary, lat = asyncio.run(_phase(url, headers, seconds, concurrency))
                phases[kind].append(summary)
                latencies[kind].append(lat)
        serve.shutdown()
        return {kind: _merge(phases[kind], latencies[kind]) for kind in urls}
    finally:
        ray.shutdown()
        if store == "redis":
            bench_serve._drop_redis_keys(online["key_prefix"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=2, help="predict+explain phase pairs")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", default="haproxy", choices=sorted(bench_serve.MODES))
    parser.add_argument("--store", default="redis", choices=("memory", "redis"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(run_child(opts.seconds, opts.rounds, opts.concurrency, opts.store)))
        return
    load_before = os.getloadavg()
    print(f"load: {load_before} on {os.cpu_count()} cores; concurrency {opts.concurrency}; "
          f"case {opts.mode}/{opts.store}/ingress")  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **bench_serve.MODES[opts.mode]}
    cmd = [sys.executable, __file__, "--child", "--seconds", str(opts.seconds),
           "--rounds", str(opts.rounds), "--concurrency", str(opts.concurrency),
           "--store", opts.store]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(json.dumps({"error": (out.stderr or out.stdout)[-1500:]}))
        sys.exit(1)
    result = json.loads(lines[-1])
    predict, explain = result["predict"], result["explain"]
    print(f"predict: {predict}")
    print(f"explain: {explain}")
    figures = {
        "case": f"{opts.mode}/{opts.store}/ingress",
        **result,
        "ratio": round(predict["rps"] / explain["rps"], 3),
        "explain_share": round(explain["rps"] / predict["rps"], 3),
        "p99_ratio": round(explain["p99_ms"] / predict["p99_ms"], 3),
        "load_avg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
