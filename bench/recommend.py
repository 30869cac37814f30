"""Recommendation serving benchmark: ``POST /v1/recommend`` vs a plain FastAPI + uvicorn app.

    .venv/bin/python bench/recommend.py [--small] [--modes throughput] [--seconds 20]
        [--recent-views store|index]

Both sides rank the same candidates with the same XGBoost ranker and answer the top
k=10 items with scores. The ranker is the demo's (its world: 2,000 users, 400
products, 60 days; its cutoffs and parameters, :func:`entai.demo.ranker.ranker_config`),
trained here with xgboost directly; its offline evaluation on held-out time (NDCG,
precision and recall at 10 of the model and of the popularity baseline) is part of
the JSON line ("offline").

(a) reference: one uvicorn worker; per user, the candidates and their feature rows are
    precomputed in an in-process dict; a request is a dict lookup, one
    ``inplace_predict`` (one thread, as entai's ranker runtime) and a top-k.
(b) entai: ``POST /v1/recommend/<ranker>`` through Ray Serve: bearer auth (RBAC
    ``predict``), candidate generation and features from the interaction index the
    ranker's run shipped, the champion's scores, top-k, and the impression log (the
    prediction tap). Serve's mode is read from the environment when Ray's workers
    start, so each mode runs in a child process with its own local Ray (num_cpus=2).
    With ``--recent-views store`` (the default, as the demo deploys it) every request
    also reads the user's ``user_recent_views`` and ``product_category_affinity`` (one
    read) from the online store (the laptop's SQLite files), which hold each user's
    recent views and category activity of the index, so both sides still rank the same
    candidates; ``index`` deploys without the store read.

Load: closed loop, concurrency 8, aiohttp, random users, on loopback. The last line
is JSON: reference and entai requests/s and p50/p99, "throughput_share" (entai rps /
reference rps; target >= 0.4), "ratio" (reference rps / entai rps; lower is better,
2.5 is the target), "p99_ms" of entai (target <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from _serving import (
    champion,
    closed_loop,
    free_port,
    model_registry,
    platform,
    reference_app,
    run_child,
    serve_app,
    summary,
)

RANKER = "bench_ranker"
PROPENSITY = "bench_model"
K = 10
USERS = 2_000
RECENT = "user_recent_views:recent_product_ids"
ACTIVITY = "product_category_affinity:category_activity_30d"


def build_ranker(work: Path) -> dict[str, Any]:
    """The demo's ranker on the demo's world (2,000 users, seed 7, 60 days): examples at
    the demo's cutoffs, trained on the early ones, evaluated on held-out time against
    popularity; saves booster, serving index and the reference's dict."""
    import xgboost as xgb

    from entai.demo.generator import EcommerceWorld, WorldConfig
    from entai.demo.ranker import ranker_config
    from entai.pipelines.training import RANKER_PARAMS, split_examples
    from entai.shared.recommend import RANKING_FEATURES, InteractionIndex, evaluate_ranking

    config = ranker_config()
    world = EcommerceWorld(WorldConfig(n_users=USERS))
    events, catalogue = world.events(), world.products()
    start = world.config.start
    end = start + timedelta(days=world.config.days)
    train, _, held_out, _ = split_examples(events, catalogue, start=start, end=end, config=config)
    names = list(RANKING_FEATURES)
    data = xgb.DMatrix(train.rows[names], label=train.rows["label"], feature_names=names)
    params = {**RANKER_PARAMS, "nthread": 1, "seed": 0}
    booster = xgb.train(params, data, num_boost_round=config.num_boost_round)
    booster.save_model(str(work / "ranker.ubj"))
    scores = booster.inplace_predict(held_out.rows[names].to_numpy(np.float32))
    ranked = evaluate_ranking(held_out, scores, K)
    offline = {
        **{k: round(v, 4) for k, v in ranked["model"].as_dict().items() if k != "lists"},
        **{
            f"popularity_{k}": round(v, 4)
            for k, v in ranked["popularity"].as_dict().items()
            if k != "lists"
        },
        "held_out_requests": ranked["model"].lists,
        "train_rows": len(train.rows),
    }
    index = InteractionIndex.from_events(events, catalogue, as_of=end)
    (work / "index.json").write_text(json.dumps(index.to_dict()))
    table = {}
    for user in range(USERS):
        items = index.candidates(user)
        table[user] = (np.asarray(items, dtype=np.int64), index.features(user, items))
    (work / "candidates.pkl").write_bytes(pickle.dumps(table))
    return {"booster": booster, "index": index, "offline": offline}


def _body(rng: np.random.Generator) -> dict[str, Any]:
    return {"user_id": int(rng.integers(USERS)), "k": K}


def _full(answer: bytes) -> bool:
    return len(json.loads(answer)["items"]) == K


def _load(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> dict:
    phase = asyncio.run(closed_loop(url, headers, seconds, concurrency, _body, accept=_full))
    return {**summary([phase]), "short_answers": phase.refused}


REFERENCE_APP = """
import pickle
import numpy as np, xgboost as xgb
from fastapi import FastAPI
from pydantic import BaseModel
booster = xgb.Booster(); booster.load_model("ranker.ubj")
booster.set_param({"nthread": 1})  # tens of rows per request: one thread is fastest
CANDIDATES = pickle.loads(open("candidates.pkl", "rb").read())
app = FastAPI()
class Body(BaseModel):
    user_id: int
    k: int = 10
@app.get("/healthz")
def healthz(): return {"status": "ok"}
@app.post("/recommend")
async def recommend(body: Body):
    items, rows = CANDIDATES[body.user_id]
    scores = booster.inplace_predict(rows.astype(np.float32))
    top = np.lexsort((items, -scores))[: body.k]
    return {"items": [{"item_id": int(items[i]), "score": float(scores[i])} for i in top]}
"""


def run_reference(work: Path, seconds: float, concurrency: int) -> dict:
    with reference_app(work, REFERENCE_APP) as base:
        _load(f"{base}/recommend", {}, 2, concurrency)  # warm-up
        return _load(f"{base}/recommend", {}, seconds, concurrency)


def _propensity(work: Path) -> Any:
    """A small propensity model: the app's main model must have a champion to start."""
    import xgboost as xgb

    from entai.demo import features as demo

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, len(demo.MODEL_FEATURES)))
    y = (x[:, 0] > 0).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(demo.MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, data, 10)


def _store_user(shards: Any, credential: str, index: dict[str, Any]) -> int:
    """Write each user's recent views and category activity of the index as their
    ``user_recent_views`` and ``product_category_affinity`` online; the users written."""
    from datetime import UTC, datetime

    from entai.actors.features import OnlineFeatureClient
    from entai.shared.features import FeatureRow, entity_key

    now = datetime.now(UTC)
    category = index["item_category"]
    rows = []
    for user, items in index["user_recent"].items():
        values = {
            "recent_product_ids": items,
            "recent_categories": [category[str(i)] for i in items],
        }
        rows.append(FeatureRow("user_recent_views", entity_key({"user_id": int(user)}), values,
                               now, now))  # fmt: skip
    for user, activity in index["user_categories"].items():
        total = sum(activity.values())
        for cat in index["category_items"]:
            value = activity.get(cat, 0.0)
            values = {"category_activity_30d": value, "category_share_30d": value / total}
            key = entity_key({"user_id": int(user), "category": cat})
            rows.append(FeatureRow("product_category_affinity", key, values, now, now))
    OnlineFeatureClient(shards, credential=credential).write(rows)
    return len(index["user_recent"])


def run_entai_child(work: Path, seconds: float, concurrency: int, recent_views: str) -> dict:
    """Inside the child: start Ray with the mode's env, deploy, load, tear down."""
    import xgboost as xgb
    from ray import serve

    from entai.actors.features import start_shards
    from entai.actors.services import platform_credential
    from entai.shared.recommend import INDEX_ARTIFACT
    from entai.shared.settings import load_settings

    port = free_port()
    settings = load_settings(home=work / "home", serve={"port": port}).resolved()
    with platform(settings) as token:
        shards = start_shards(settings, settings.ray.namespace)
        registry = model_registry(settings)
        ranker = xgb.Booster()
        ranker.load_model(str(work / "ranker.ubj"))
        index = json.loads((work / "index.json").read_text())
        champion(registry, PROPENSITY, _propensity(work))
        champion(registry, RANKER, ranker, {INDEX_ARTIFACT: index})
        options: dict[str, Any] = {"ranker_model": RANKER}
        stored = 0
        if recent_views == "store":
            stored = _store_user(shards, platform_credential(settings, "bench"), index)
            options["ranker_recent_views"] = RECENT
            options["ranker_category_activity"] = ACTIVITY
        url = serve_app(settings, port, PROPENSITY, **options)
        headers = {"Authorization": f"Bearer {token}"}
        target = f"{url}/v1/recommend/{RANKER}"
        _load(target, headers, 3, concurrency)  # warm-up
        result = _load(target, headers, seconds, concurrency)
        sources = _sources(target, headers)
        serve.shutdown()
        return {**result, "recent_views": recent_views, "users_stored": stored, **sources}


def _sources(target: str, headers: dict[str, str]) -> dict[str, Any]:
    """Where a sample of users' views came from, and whether any answer fell back."""
    import httpx

    seen: dict[str, int] = {}
    fallbacks = 0
    for user in range(0, USERS, 50):
        got = httpx.post(target, json={"user_id": user, "k": K}, headers=headers).json()
        source = f"{got['recent_views_source']}/{got['category_activity_source']}"
        seen[source] = seen.get(source, 0) + 1
        fallbacks += got["fallback"] is not None
    return {"sampled_sources": seen, "sampled_fallbacks": fallbacks}


def run_entai(mode: str, work: Path, seconds: float, concurrency: int, recent_views: str) -> dict:
    args = ["--child", str(work), "--seconds", str(seconds), "--concurrency", str(concurrency),
            "--recent-views", recent_views]  # fmt: skip
    return run_child(__file__, mode, args)


def _same_answers(work: Path, built: dict[str, Any]) -> bool:
    """Both sides rank the same candidates with the same model: check a few users."""
    from entai.deployments.model_runtime import xgboost_model
    from entai.deployments.recommend import recommend

    table = pickle.loads((work / "candidates.pkl").read_bytes())
    model = xgboost_model(1, built["booster"])
    for user in (0, 17, 1999):
        items, rows = table[user]
        scores = built["booster"].inplace_predict(rows.astype(np.float32))
        ref = [int(items[i]) for i in np.lexsort((items, -scores))[:K]]
        if recommend(model, built["index"], user, k=K).items != ref:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--modes", default="throughput")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--child", default=None)
    parser.add_argument("--recent-views", choices=("store", "index"), default="store")
    opts = parser.parse_args()
    seconds = opts.seconds or (5.0 if opts.small else 20.0)
    if opts.child:
        child = run_entai_child(Path(opts.child), seconds, opts.concurrency, opts.recent_views)
        print(json.dumps(child))
        return
    print(f"load: {os.getloadavg()} on {os.cpu_count()} cores; concurrency {opts.concurrency}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        built = build_ranker(work)
        same = _same_answers(work, built)
        print(f"offline evaluation on held-out time: {built['offline']}")
        print(f"same top-{K} on both sides for sampled users: {same}")
        reference = run_reference(work, seconds, opts.concurrency)
        print(f"reference FastAPI+uvicorn: {reference}")
        results = {}
        for mode in opts.modes.split(","):
            results[mode] = run_entai(mode, work, seconds, opts.concurrency, opts.recent_views)
            print(f"entai [{mode}]: {results[mode]}")
    ok = {m: r for m, r in results.items() if "rps" in r and r["errors"] == 0}
    figures: dict[str, Any] = {"reference": reference, "entai": results, "k": K,
                               "concurrency": opts.concurrency, "same_answers": same,
                               "recent_views": opts.recent_views,
                               "offline": built["offline"],
                               "load_avg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
    if ok:
        best = max(ok, key=lambda m: ok[m]["rps"])
        figures["mode"] = best
        figures["throughput_share"] = round(ok[best]["rps"] / reference["rps"], 3)
        figures["p99_ms"] = ok[best]["p99_ms"]
        figures["ratio"] = round(reference["rps"] / ok[best]["rps"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
