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
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _serving import (
    CATS,
    MODEL,
    MODES,
    Phase,
    closed_loop,
    drop_redis_keys,
    entity_body,
    free_port,
    platform,
    run_child,
    serve_predict_world,
    store_settings,
    summary,
)


def _phase(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> Phase:
    return asyncio.run(closed_loop(url, headers, seconds, concurrency, entity_body))


def _check_explanation(url: str, headers: dict[str, str]) -> None:
    """One explain answered as specified (contributions sum to the margin), before timing."""
    import httpx

    body = {"entities": {"user_id": [1], "category": [CATS[0]]}}
    answer = httpx.post(url, json=body, headers=headers, timeout=30).json()
    (row,) = answer["explanations"]
    total = row["base_value"] + sum(f["contribution"] for f in row["features"])
    if abs(total - row["margin"]) > 1e-4 or row["method"] != "tree_shap":
        raise RuntimeError(f"explanation does not add up: {row}")


def run_entai_child(seconds: float, rounds: int, concurrency: int, store: str) -> dict[str, Any]:
    """Inside the child: start Ray, deploy, alternate predict and explain, tear down."""
    from ray import serve

    from entai.shared.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="entai-bench-explain-"))
    port = free_port()
    online = store_settings(store)
    settings = load_settings(home=work, serve={"port": port}, online_store=online).resolved()
    try:
        with platform(settings) as token:
            base = serve_predict_world(settings, work, port)
            headers = {"Authorization": f"Bearer {token}"}
            urls = {
                "predict": f"{base}/v1/predict/{MODEL}",
                "explain": f"{base}/v1/explain/{MODEL}",
            }
            _check_explanation(urls["explain"], headers)
            for url in urls.values():  # warm-up
                _phase(url, headers, 3, concurrency)
            phases: dict[str, list[Phase]] = {k: [] for k in urls}
            for _ in range(rounds):
                for kind, url in urls.items():
                    phases[kind].append(_phase(url, headers, seconds, concurrency))
            serve.shutdown()
            return {
                kind: {**summary(runs), "phases_rps": [p.rps for p in runs]}
                for kind, runs in phases.items()
            }
    finally:
        if store == "redis":
            drop_redis_keys(online["key_prefix"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=2, help="predict+explain phase pairs")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", default="haproxy", choices=sorted(MODES))
    parser.add_argument("--store", default="redis", choices=("memory", "redis"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        print(json.dumps(run_entai_child(opts.seconds, opts.rounds, opts.concurrency, opts.store)))
        return
    load_before = os.getloadavg()
    print(f"load: {load_before} on {os.cpu_count()} cores; concurrency {opts.concurrency}; "
          f"case {opts.mode}/{opts.store}/ingress")  # fmt: skip
    args = ["--child", "--seconds", str(opts.seconds), "--rounds", str(opts.rounds),
            "--concurrency", str(opts.concurrency), "--store", opts.store]  # fmt: skip
    result = run_child(__file__, opts.mode, args)
    if "error" in result:
        print(json.dumps(result))
        sys.exit(1)
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
