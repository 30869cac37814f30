"""The Serve application over real HTTP: predictions, errors, canary, shadow, endpoints.

One application for the module (the shipped graph: the Ingress scores in-process;
canary 20 %, shadow on) on port 8121, over the real governance, shard and registry
actors and an MLflow registry holding three XGBoost versions (champion, challenger,
shadow). The helpers here (:func:`deploy_platform`) are shared with the other Serve
modules. The same application answers gRPC on 9121: those tests send the same requests
through a client compiled from entai.proto (:mod:`grpc_client`) and expect the HTTP
answers. A second application next to it (Ingress -> Model, both autoscaling with short
delays) is driven by a ramp of client threads and must scale up and back to its
minimum, as ``entai status`` reads it. Last, schemathesis feeds every operation of the
app's OpenAPI schema generated bodies, with the drift monitor running.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc_client
import httpx
import numpy as np
import pandas as pd
import pytest
from credentials import service_of

from entai.demo import features as demo
from entai.shared.features import FeatureRow, entity_key

pytestmark = pytest.mark.system  # boots a platform of its own: `make test-system` (CI runs it)

MODEL = "serve_test_model"
CATEGORIES = ("books", "games", "tools")
USERS = 400
GRPC_TARGET = "127.0.0.1:9121"


@dataclass(frozen=True)
class ModelTokens:
    """Who registers the test's models (a token of ``ml-engineer``) and who approves
    them (one of ``approver``): two principals, so the four-eyes gate holds."""

    trainer: str
    approver: str


@dataclass
class Platform:
    """A deployed test platform: URL, tokens, boosters by version, written features.

    ``tokens`` register versions and move ``challenger`` and ``shadow`` (``trainer``),
    and promote and roll back ``champion`` (``approver``).
    """

    url: str
    settings: Any
    admin: str
    analyst: str
    app_token: str
    tokens: ModelTokens
    boosters: dict[int, Any]
    aliases: dict[str, int]
    features: dict[tuple[int, str], np.ndarray]
    registry: Any
    app_name: str
    actors: list[Any] = field(default_factory=list)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.app_token}"}

    def expected(self, version: int, user: int, category: str) -> float:
        row = self.features[(user, category)][None, :]
        return float(self.boosters[version].inplace_predict(row)[0])


def _train(seed: int) -> Any:
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, len(demo.MODEL_FEATURES)))
    y = (x[:, seed % 12] + rng.normal(scale=0.5, size=500) > 0).astype(int)
    data = xgb.DMatrix(x, label=y, feature_names=list(demo.MODEL_FEATURES))
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, data, num_boost_round=8)


def _write_features(settings: Any, namespace: str) -> dict[tuple[int, str], np.ndarray]:
    from entai.actors.features import OnlineFeatureClient, start_shards

    rng = np.random.default_rng(7)
    now = datetime.now(UTC)
    uc_names = [f.name for f in demo.user_category_stats.schema]
    u_names = [f.name for f in demo.user_stats.schema]
    rows: list[FeatureRow] = []
    user_values = {u: rng.normal(size=len(u_names)) for u in range(USERS)}
    out: dict[tuple[int, str], np.ndarray] = {}
    for u in range(USERS):
        rows.append(
            FeatureRow(
                "user_stats",
                entity_key({"user_id": u}),
                dict(zip(u_names, user_values[u].tolist(), strict=True)),
                now - timedelta(hours=1),
                now,
            )
        )
        for c in CATEGORIES:
            values = rng.normal(size=len(uc_names))
            rows.append(
                FeatureRow(
                    "user_category_stats",
                    entity_key({"user_id": u, "category": c}),
                    dict(zip(uc_names, values.tolist(), strict=True)),
                    now - timedelta(hours=1),
                    now,
                )
            )
            out[(u, c)] = np.concatenate([values, user_values[u]])
    client = OnlineFeatureClient(start_shards(settings, namespace), credential=service_of(settings))
    client.write(rows)
    return out


VALIDATION_SET = "serve-test-valid"
"""The one validation set every test version's metrics are recorded on, so the
not-worse-than-champion gate can compare them."""


def register_booster(registry: Any, booster: Any, token: str, model: str = MODEL) -> int:
    """Log ``booster`` to MLflow and register it as a version of ``model`` with
    ``token`` (``models:register``); its version."""
    import mlflow
    import mlflow.xgboost
    import ray

    with mlflow.start_run():
        logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
    info = ray.get(
        registry.register.remote(
            logged.model_uri,
            model,
            token=token,
            metrics={"valid_auc": 0.8},
            validation_dataset_id=VALIDATION_SET,
        ),
        timeout=120,
    )
    return int(info.version)


def deploy_platform(
    tmp: Path,
    *,
    port: int,
    canary_percent: float = 0.0,
    shadow: bool = True,
    model_replicas: int = 1,
    ingress_replicas: int | None = None,
    grpc_port: int | None = None,
    score_in_ingress: bool = True,
    security: dict[str, Any] | None = None,
    serve_settings: dict[str, Any] | None = None,
    settings_overrides: dict[str, Any] | None = None,
    ranker_model: str | None = None,
    ranker_recent_views: str | None = None,
    ranker_category_activity: str | None = None,
    before_serve: Callable[[Any, Any, ModelTokens], None] | None = None,
) -> Platform:
    """Start governance, shards, registry (3 versions) and the Serve app on ``port``.

    With ``grpc_port``, Serve's gRPC proxy serves the same app there (entai.proto);
    ``score_in_ingress`` is :class:`~entai.deployments.app.AppArgs`' scoring switch
    (on, as shipped; off deploys a Model deployment behind the Ingress); ``security``
    and ``serve_settings`` override fields of those settings sections (e.g.
    ``auth_guard``, breaker thresholds); ``settings_overrides`` replaces whole sections
    (e.g. ``observability``, ``streams``, ``mlflow``, ``online_store``, ``monitoring``).
    ``before_serve(settings, registry, tokens)`` runs before the app starts (e.g. to
    register and promote a ranker); ``ranker_model`` then serves ``/v1/recommend``,
    reading users' recent views online from ``ranker_recent_views`` and their category
    activity from ``ranker_category_activity`` when given.

    Versions are registered with an ``ml-engineer`` token; ``champion`` is gated (a
    permissive policy: no metric floor, no card, but four-eyes and not worse than the
    champion) and given by ``promote`` with an ``approver`` token.
    """
    import ray
    from ray import serve

    from entai.actors.backends import configure_mlflow
    from entai.actors.governance import start_governance
    from entai.actors.models import ACTOR_NAME as REGISTRY
    from entai.actors.models import start_registry
    from entai.actors.services import service_governance
    from entai.deployments.app import AppArgs, build_app
    from entai.deployments.grpc_ingress import serve_options
    from entai.shared.models import PromotionPolicy
    from entai.shared.settings import load_settings

    namespace = f"serve-test-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        home=tmp,
        ray={"namespace": namespace},
        serve={
            "port": port,
            "grpc_port": grpc_port,
            # Ray's gRPC proxy binds every interface: accepted explicitly, as it must be.
            "wildcard_listeners": grpc_port is not None,
            "request_timeout_s": 30,
            **(serve_settings or {}),
        },
        security=security or {},
        **(settings_overrides or {}),
    ).resolved()
    governance = start_governance(settings, namespace)
    ray.get(governance.__ray_ready__.remote(), timeout=120)
    admin = Path(settings.security.token_file).read_text().strip()
    analyst, _ = ray.get(governance.create_token.remote(admin, "analyst"), timeout=60)
    app_token, _ = ray.get(governance.create_token.remote(admin, "app"), timeout=60)
    tokens = ModelTokens(
        *(
            ray.get(governance.create_token.remote(admin, principal), timeout=60)[0]
            for principal in ("ml-engineer", "approver")
        )
    )
    features = _write_features(settings, namespace)
    policy = PromotionPolicy(min_metrics={}, require_card=False)
    registry = start_registry(
        settings.mlflow, namespace, service_governance(settings, REGISTRY), policy=policy
    )
    configure_mlflow(settings.mlflow)
    boosters: dict[int, Any] = {}
    for seed in (1, 2, 3, 4):
        booster = _train(seed)
        boosters[register_booster(registry, booster, tokens.trainer)] = booster
    versions = sorted(boosters)
    aliases = {"champion": versions[0], "challenger": versions[1], "shadow": versions[2]}
    ray.get(
        registry.promote.remote(MODEL, aliases["champion"], token=tokens.approver, reason="test"),
        timeout=60,
    )
    for alias in ("challenger", "shadow"):
        ray.get(
            registry.set_alias.remote(
                MODEL, alias, aliases[alias], token=tokens.trainer, reason="test"
            ),
            timeout=60,
        )
    if before_serve is not None:
        before_serve(settings, registry, tokens)
    serve.start(**serve_options(settings.serve))
    args = AppArgs(
        model_name=MODEL,
        feature_service=demo.purchase_propensity.name,
        definitions_module=demo.__name__,
        settings=settings,
        canary_percent=canary_percent,
        shadow=shadow,
        model_replicas=model_replicas,
        ingress_replicas=ingress_replicas,
        score_in_ingress=score_in_ingress,
        tap_flush_interval_s=0.2,
        event_contracts={"events": "entai.demo.contracts:EVENTS_CONTRACT"},
        ranker_model=ranker_model,
        ranker_recent_views=ranker_recent_views,
        ranker_category_activity=ranker_category_activity,
    )
    app_name = f"entai-{port}"
    serve.run(build_app(args), name=app_name, route_prefix="/")
    return Platform(
        url=f"http://127.0.0.1:{port}",
        settings=settings,
        admin=admin,
        analyst=analyst,
        app_token=app_token,
        tokens=tokens,
        boosters=boosters,
        aliases=aliases,
        features=features,
        registry=registry,
        app_name=app_name,
        actors=[governance, registry],
    )


def teardown_platform(platform: Platform) -> None:
    """Delete the app, stop Serve and kill the module's actors."""
    import ray
    from ray import serve

    from entai.actors.features import shard_name

    try:
        serve.delete(platform.app_name)
        serve.shutdown()
    finally:
        namespace = platform.settings.ray.namespace
        for i in range(platform.settings.online_store.num_shards):
            ray.kill(ray.get_actor(shard_name(i), namespace=namespace))
        for actor in platform.actors:
            ray.kill(actor)


def predict_body(user: int, category: str) -> dict[str, Any]:
    return {"entities": {"user_id": [user], "category": [category]}}


def post_users(
    client: httpx.Client, platform: Platform, path: str, users: int
) -> tuple[list[int], list[str], dict[str, Any]]:
    """POST users ``0..users-1`` (user u in ``CATEGORIES[u % 3]``) to ``path`` with the app
    token; the users, their categories and the answer, checked 200 and carrying its
    request id in ``x-request-id``."""
    ids = list(range(users))
    cats = [CATEGORIES[u % 3] for u in ids]
    body = {"entities": {"user_id": ids, "category": cats}}
    response = client.post(path, json=body, headers=platform.headers())
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    assert response.headers["x-request-id"] == payload["request_id"]
    return ids, cats, payload


# The refusals every model endpoint shares, as (case, status, error code): see refusal_target.
COMMON_REFUSALS = [
    ("no_token", 401, "unauthenticated"),
    ("not_allowed", 403, "permission_denied"),
    ("unknown_model", 404, "not_found"),
]


def refusal_cases(*more: tuple[str, int, str]) -> pytest.MarkDecorator:
    """Parametrize ``case``, ``status`` and ``code`` over the common refusals and ``more``."""
    return pytest.mark.parametrize(("case", "status", "code"), [*COMMON_REFUSALS, *more])


def refusal_target(
    platform: Platform, case: str, path: str, unknown_path: str
) -> tuple[str, dict[str, str]]:
    """The path and headers of a refusal case.

    ``no_token`` sends no token, ``not_allowed`` the analyst's (features:read, no
    predict), ``unknown_model`` goes to ``unknown_path``; any other case is ``path`` with
    the app token.
    """
    headers = platform.headers()
    if case == "no_token":
        headers = {}
    elif case == "not_allowed":
        headers = platform.headers(platform.analyst)
    elif case == "unknown_model":
        path = unknown_path
    return path, headers


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response has ``status`` and an error envelope with ``code``; the error."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


# The embedded default's roles and principals, plus two apps whose grants hold on some
# resources only (RBAC matrix below): one on this module's model, its user views and the
# "events" source; the other on a fraud model, the product views and another source.
SCOPED_POLICY = f"""
version: 2
roles:
  admin: [admin]
  data-scientist: [features:read, features:read_pii, features:write, models:register, predict]
  ml-engineer: [features:read, features:write, events:write, models:register, predict]
  approver: [models:approve, audit:read]
  app: [predict]
  analyst: [features:read]
  served-app:
    - predict: ["model:{MODEL[:11]}*"]
    - features:read: ["view:user_*"]
    - events:write: [source:events]
  other-app:
    - predict: ["model:fraud_*"]
    - features:read: ["view:product_*"]
    - events:write: [source:clickstream]
principals:
  admin: {{roles: [admin]}}
  data-scientist: {{roles: [data-scientist]}}
  ml-engineer: {{roles: [ml-engineer]}}
  approver: {{roles: [approver]}}
  app: {{roles: [app]}}
  analyst: {{roles: [analyst]}}
  served-app: {{roles: [served-app]}}
  other-app: {{roles: [other-app]}}
"""


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("serve-http")
    policy = home / "policy.yaml"
    policy.write_text(SCOPED_POLICY)
    deployed = deploy_platform(
        home,
        port=8121,
        grpc_port=9121,
        canary_percent=20.0,
        security={"policy_file": str(policy)},
    )
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as c:
        yield c


def test_predictions_equal_the_model_called_directly(
    platform: Platform, client: httpx.Client
) -> None:
    users, cats, payload = post_users(client, platform, f"/v1/predict/{MODEL}", 20)
    assert payload["model"] == MODEL
    served = {platform.aliases["champion"], platform.aliases["challenger"]}
    assert set(payload["versions"]) <= served
    for u, c, v, p in zip(users, cats, payload["versions"], payload["predictions"], strict=True):
        assert p == pytest.approx(platform.expected(v, u, c), rel=1e-6)


def test_request_features_are_rejected_when_not_numbers(
    platform: Platform, client: httpx.Client
) -> None:
    body = {**predict_body(1, "books"), "request_features": {"x": ["not a number"]}}
    response = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
    assert response.status_code == 422
    (problem,) = response.json()["error"]["details"]["errors"]
    assert problem["field"] == "body.request_features.x.0"


@refusal_cases(
    ("bad_token", 401, "unauthenticated"),
    ("malformed_header", 401, "unauthenticated"),
    ("bad_body", 422, "invalid_input"),
    ("missing_join_key", 422, "invalid_input"),
    ("uneven_entities", 422, "invalid_input"),
    ("unknown_route", 404, "not_found"),
    ("wrong_method", 405, "method_not_allowed"),
)
def test_every_error_class_has_its_status_and_envelope(
    platform: Platform, client: httpx.Client, case: str, status: int, code: str
) -> None:
    path, headers = refusal_target(
        platform, case, f"/v1/predict/{MODEL}", "/v1/predict/no_such_model"
    )
    body: dict[str, Any] = predict_body(1, "books")
    method = "POST"
    if case == "bad_token":
        headers = platform.headers("not-a-real-token")
    elif case == "malformed_header":
        headers = {"Authorization": platform.app_token}
    elif case == "bad_body":
        body = {"entities": "nope"}
    elif case == "missing_join_key":
        body = {"entities": {"user_id": [1]}}
    elif case == "uneven_entities":
        body = {"entities": {"user_id": [1, 2], "category": ["books"]}}
    elif case == "unknown_route":
        path = "/v1/nothing-here"
    elif case == "wrong_method":
        method = "GET"
    response = client.request(
        method, path, json=body if method == "POST" else None, headers=headers
    )
    error = assert_refused(response, status, code)
    assert set(error) == {"code", "message", "details"}
    assert response.headers.get("x-request-id")


def test_canary_share_is_twenty_percent_and_sticky(
    platform: Platform, client: httpx.Client
) -> None:
    challenger = platform.aliases["challenger"]
    pairs = [(u, c) for u in range(USERS) for c in CATEGORIES][:1000]
    requests = pairs + pairs  # 2,000 requests; each entity twice

    def call(pair: tuple[int, str]) -> int:
        r = client.post(
            f"/v1/predict/{MODEL}", json=predict_body(*pair), headers=platform.headers()
        )
        assert r.status_code == 200, r.text
        return int(r.json()["version"])

    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(call, requests))
    share = np.mean(np.asarray(versions) == challenger)
    assert 0.17 <= share <= 0.23
    first, second = versions[: len(pairs)], versions[len(pairs) :]
    assert first == second  # sticky: the same entity always gets the same version


def test_shadow_predictions_are_logged_never_returned(
    platform: Platform, client: httpx.Client
) -> None:
    shadow = platform.aliases["shadow"]
    rids = []
    for u in range(5):
        r = client.post(
            f"/v1/predict/{MODEL}", json=predict_body(u, "games"), headers=platform.headers()
        )
        assert r.status_code == 200
        assert shadow not in r.json()["versions"]
        rids.append(r.json()["request_id"])
    root = Path(platform.settings.lake.root) / "predictions" / f"model={MODEL}"
    deadline = time.monotonic() + 60
    log = pd.DataFrame()
    while time.monotonic() < deadline:
        files = list(root.rglob("*.parquet"))
        if files:
            log = pd.concat([pd.read_parquet(f) for f in files])
            if set(rids) <= set(log.loc[log["alias"] == "shadow", "request_id"]):
                break
        time.sleep(0.5)
    mine = log[log["request_id"].isin(rids)]
    shadow_rows = mine[mine["alias"] == "shadow"]
    assert set(shadow_rows["request_id"]) == set(rids)
    assert set(shadow_rows["version"]) == {shadow}
    row = shadow_rows.iloc[0]
    user = int(rids.index(row["request_id"]))
    assert row["prediction"] == pytest.approx(platform.expected(shadow, user, "games"), rel=1e-6)
    assert set(mine.loc[mine["alias"] != "shadow", "version"]) <= {
        platform.aliases["champion"],
        platform.aliases["challenger"],
    }


def test_model_endpoints_and_health(platform: Platform, client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    models = client.get("/v1/models", headers=platform.headers())
    assert models.status_code == 200
    mine = next(m for m in models.json() if m["name"] == MODEL)
    assert mine["aliases"] == platform.aliases
    detail = client.get(f"/v1/models/{MODEL}", headers=platform.headers()).json()
    assert [v["version"] for v in detail["versions"]] == sorted(platform.boosters)
    assert detail["serving"] == platform.aliases
    missing = client.get("/v1/models/nope", headers=platform.headers())
    assert missing.status_code == 404
    assert client.get("/v1/models", headers=platform.headers(platform.analyst)).status_code == 403
    schema = client.get("/openapi.json").json()
    assert "/v1/predict/{model}" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_online_features_are_feast_shaped(platform: Platform, client: httpx.Client) -> None:
    body = {
        "feature_service": demo.purchase_propensity.name,
        "entities": {"user_id": [3], "category": ["tools"]},
    }
    response = client.post(
        "/v1/features/online", json=body, headers=platform.headers(platform.analyst)
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    values = [r["values"][0] for r in payload["results"]]
    assert values == pytest.approx(platform.features[(3, "tools")].tolist())
    assert payload["metadata"]["feature_names"] == list(demo.MODEL_FEATURES)


def test_monitoring_and_feedback_need_the_drift_monitor(
    platform: Platform, client: httpx.Client
) -> None:
    report = client.get(f"/v1/monitoring/{MODEL}", headers=platform.headers(platform.admin))
    assert report.status_code == 503
    assert report.json()["error"]["code"] == "service_unavailable"
    denied = client.get(f"/v1/monitoring/{MODEL}", headers=platform.headers())
    assert denied.status_code == 403
    bad = client.post(
        "/v1/feedback", json={"model": MODEL, "labels": {"r1": 7}}, headers=platform.headers()
    )
    assert bad.status_code == 422


def _view_event(event_id: str, *, search_query: str = "") -> dict[str, Any]:
    """A valid ``events`` record: user 7 viewed product 3 (books)."""
    return {
        "event_id": event_id,
        "user_id": 7,
        "user_email": "seven@example.com",
        "product_id": 3,
        "category": "books",
        "price": 12.5,
        "event_type": "view",
        "event_timestamp": "2026-11-01T10:00:00+00:00",
        "search_query": search_query,
    }


def test_events_are_validated_published_and_permissioned(
    platform: Platform, client: httpx.Client
) -> None:
    good = _view_event("ev-1-00000001", search_query="mail me at seven@example.com")
    bad = {**good, "event_id": "ev-1-00000002", "category": "weapons", "price": -1.0}
    body = {"source": "events", "events": [good, bad]}
    denied = client.post("/v1/events", json=body, headers=platform.headers(platform.app_token))
    assert denied.status_code == 403
    response = client.post("/v1/events", json=body, headers=platform.headers(platform.admin))
    assert response.status_code == 202, response.text
    receipt = response.json()
    assert receipt["accepted"] == 1 and receipt["rejected"] == 1
    (error,) = receipt["errors"]
    assert error["index"] == 1
    joined = " ".join(error["errors"])
    assert "category" in joined and "price" in joined
    assert "example.com" not in response.text, "a receipt must not echo PII"
    unknown = client.post(
        "/v1/events",
        json={"source": "clicks", "events": [good]},
        headers=platform.headers(platform.admin),
    )
    assert unknown.status_code == 404


def test_erasure_needs_its_permission_and_runs_as_a_job_with_a_receipt(
    platform: Platform, client: httpx.Client
) -> None:
    body = {"entity": {"user_id": 987654}, "reason": "test request"}
    denied = client.post(
        "/v1/governance/erase", json=body, headers=platform.headers(platform.analyst)
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    assert client.post("/v1/governance/erase", json={"entity": {}}).status_code in (401, 422)
    admin = platform.headers(platform.admin)
    started = client.post("/v1/governance/erase", json=body, headers=admin, timeout=60)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "running" and len(job["erasure_id"]) == 32
    location = started.headers["location"]
    assert location == f"/v1/governance/erasures/{job['erasure_id']}"

    def finished() -> dict[str, Any] | None:
        answer = client.get(location, headers=admin)
        assert answer.status_code == 200, answer.text
        receipt: dict[str, Any] = answer.json()
        return None if receipt["status"] == "running" else receipt

    deadline = time.monotonic() + 120
    while (receipt := finished()) is None:
        assert time.monotonic() < deadline, "the erasure did not finish in 120 s"
        time.sleep(0.5)
    assert receipt["status"] == "done" and receipt["complete"] is True, receipt
    assert receipt["remaining"] and all(v == 0 for v in receipt["remaining"].values())
    assert {s["store"] for s in receipt["stores"]} >= {"online", "offline", "raw"}
    assert "987654" not in json.dumps(receipt), "the receipt names the subject by its digest"
    assert client.get(location, headers=platform.headers(platform.analyst)).status_code == 403
    assert client.get(location).status_code == 401
    unknown = client.get("/v1/governance/erasures/" + "0" * 32, headers=admin)
    assert unknown.status_code == 404
    assert client.get("/v1/governance/erasures/nope", headers=admin).status_code == 404


# --- the same requests over gRPC (entai.proto through Serve's gRPC proxy) -------------

GOOD = {"user_id": [1], "category": ["books"]}
BY_SERVICE = {"feature_service": demo.purchase_propensity.name}
UNEVEN = {"user_id": [1, 2], "category": ["books"]}
# case: (method, model or online-features body, entities, token, gRPC status)
GRPC_REFUSALS: dict[str, tuple[str, Any, dict[str, list[Any]], str | None, str]] = {
    "no_token": ("Predict", MODEL, GOOD, None, "UNAUTHENTICATED"),
    "bad_token": ("Predict", MODEL, GOOD, "bogus", "UNAUTHENTICATED"),
    "not_allowed": ("Predict", MODEL, GOOD, "analyst", "PERMISSION_DENIED"),
    "features_not_allowed": ("GetOnlineFeatures", BY_SERVICE, GOOD, "app", "PERMISSION_DENIED"),
    "unknown_model": ("Predict", "no_such_model", GOOD, "app", "NOT_FOUND"),
    "missing_join_key": ("Predict", MODEL, {"user_id": [1]}, "app", "INVALID_ARGUMENT"),
    "uneven_entities": ("Predict", MODEL, UNEVEN, "app", "INVALID_ARGUMENT"),
    "no_feature_source": ("GetOnlineFeatures", {}, GOOD, "analyst", "INVALID_ARGUMENT"),
}


@pytest.fixture(scope="module")
def grpc_stubs(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Path:
    stubs = grpc_client.compile_stubs(tmp_path_factory.mktemp("grpc-client"))
    grpc_client.wait_for_route(GRPC_TARGET, platform.app_name)
    return stubs


def over_grpc(
    platform: Platform, stubs: Path, *calls: tuple[str, dict[str, Any], str | None]
) -> list[dict[str, Any]]:
    """Answers to ``(method, request in proto JSON, token)`` from the client process."""
    app = [["application", platform.app_name]]
    return grpc_client.call(
        stubs,
        GRPC_TARGET,
        [
            {
                "method": method,
                "request": request,
                "metadata": app + ([] if token is None else [["authorization", f"Bearer {token}"]]),
            }
            for method, request, token in calls
        ],
    )


def test_grpc_predictions_equal_the_http_answers(
    platform: Platform, client: httpx.Client, grpc_stubs: Path
) -> None:
    users = list(range(40))
    entities = {"user_id": users, "category": [CATEGORIES[u % 3] for u in users]}
    response = client.post(
        f"/v1/predict/{MODEL}", json={"entities": entities}, headers=platform.headers()
    )
    assert response.status_code == 200, response.text
    expected = response.json()
    request = {"model": MODEL, "entities": grpc_client.columns(entities)}
    (answer,) = over_grpc(platform, grpc_stubs, ("Predict", request, platform.app_token))
    assert answer["code"] == "OK", answer["details"]
    got = answer["response"]
    assert got["model"] == expected["model"] == MODEL
    assert got["predictions"] == expected["predictions"]
    assert [int(v) for v in got["versions"]] == expected["versions"]
    assert int(got["version"]) == expected["version"]
    assert len(set(expected["versions"])) == 2, "the 20 % canary splits these 40 entities"
    assert got["request_id"] == answer["trailing"]["request_id"] != expected["request_id"]


@pytest.mark.parametrize("source", ["feature_service", "features"])
def test_grpc_online_features_equal_the_http_answers(
    platform: Platform, client: httpx.Client, grpc_stubs: Path, source: str
) -> None:
    entities = {"user_id": [3, 4, 99_999], "category": ["tools", "books", "games"]}
    body: dict[str, Any] = dict(BY_SERVICE)
    request: dict[str, Any] = dict(BY_SERVICE)
    if source == "features":
        refs = [f"{demo.user_stats.name}:{f.name}" for f in demo.user_stats.schema[:3]]
        body = {"features": refs, "full_feature_names": True}
        request = {"features": {"names": refs}, "full_feature_names": True}
    response = client.post(
        "/v1/features/online",
        json={**body, "entities": entities},
        headers=platform.headers(platform.analyst),
    )
    assert response.status_code == 200, response.text
    expected = response.json()
    request["entities"] = grpc_client.columns(entities)
    (answer,) = over_grpc(platform, grpc_stubs, ("GetOnlineFeatures", request, platform.analyst))
    assert answer["code"] == "OK", answer["details"]
    got = answer["response"]
    assert got["metadata"]["feature_names"] == expected["metadata"]["feature_names"]
    assert len(got["results"]) == len(expected["results"]) > 0
    for mine, theirs in zip(got["results"], expected["results"], strict=True):
        assert [grpc_client.plain(v) for v in mine["values"]] == theirs["values"]
        assert mine["statuses"] == theirs["statuses"]
        assert mine["statuses"][2] == "NOT_FOUND"  # user 99,999 has no stored values
        assert [
            grpc_client.instant(t, null=grpc_client.ZERO_TIME) for t in mine["event_timestamps"]
        ] == [grpc_client.instant(t, null=None) for t in theirs["event_timestamps"]]


@pytest.fixture(scope="module")
def grpc_refusals(
    platform: Platform, client: httpx.Client, grpc_stubs: Path
) -> dict[str, tuple[dict[str, Any], httpx.Response]]:
    """Per case of :data:`GRPC_REFUSALS`: the gRPC answer and the HTTP answer."""
    tokens = {"bogus": "not-a-real-token", "app": platform.app_token, "analyst": platform.analyst}
    calls, http_answers = [], []
    for method, target, entities, role, _ in GRPC_REFUSALS.values():
        token = None if role is None else tokens[role]
        if method == "Predict":
            request = {"model": target, "entities": grpc_client.columns(entities)}
            path, body = f"/v1/predict/{target}", {"entities": entities}
        else:
            request = {**target, "entities": grpc_client.columns(entities)}
            path, body = "/v1/features/online", {**target, "entities": entities}
        calls.append((method, request, token))
        headers = {} if token is None else platform.headers(token)
        http_answers.append(client.post(path, json=body, headers=headers))
    answers = over_grpc(platform, grpc_stubs, *calls)
    return dict(zip(GRPC_REFUSALS, zip(answers, http_answers, strict=True), strict=True))


@pytest.mark.parametrize("case", GRPC_REFUSALS)
def test_grpc_refuses_what_http_refuses_with_the_matching_status(
    grpc_refusals: dict[str, tuple[dict[str, Any], httpx.Response]], case: str
) -> None:
    answer, http_answer = grpc_refusals[case]
    assert answer["code"] == GRPC_REFUSALS[case][-1], answer
    assert answer["details"]
    assert answer["trailing"]["entai-error-code"] == http_answer.json()["error"]["code"]
    assert answer["trailing"]["request_id"]


def _replica_log(app_name: str) -> str:
    """The text of this node's Ingress replica log files of ``app_name``."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    files = sorted(logs.glob(f"replica_{app_name}_Ingress_*.log"))
    assert files, f"no Ingress replica log of {app_name} under {logs}"
    return "".join(f.read_text(errors="replace") for f in files)


def test_the_replica_logs_each_refused_request_and_no_served_one(
    platform: Platform,
    client: httpx.Client,
    grpc_refusals: dict[str, tuple[dict[str, Any], httpx.Response]],
) -> None:
    """``serve.access_log: failures``, the default: one line per refused request (HTTP
    and gRPC) with its request id, at once; none for a served predict (Serve's own
    access line is off)."""
    body = predict_body(3, "books")
    served = client.post(f"/v1/predict/{MODEL}", json=body, headers=platform.headers())
    refused = client.post(
        f"/v1/predict/{MODEL}", json=body, headers=platform.headers("not-a-real-token")
    )
    assert (served.status_code, refused.status_code) == (200, 401)
    grpc_rid = grpc_refusals["not_allowed"][0]["trailing"]["request_id"]
    rids = (served.headers["x-request-id"], refused.headers["x-request-id"], grpc_rid)
    deadline = time.monotonic() + 10  # the line is written once the answer is sent
    while True:
        text = _replica_log(platform.app_name)  # Serve buffers 1,000 lines; these are not
        lines = [[line for line in text.splitlines() if rid in line] for rid in rids]
        if lines[1] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    served_lines, refused_lines, grpc_lines = lines
    assert served_lines == []
    assert len(refused_lines) == 1 and f"POST /v1/predict/{MODEL} 401 " in refused_lines[0]
    assert len(grpc_lines) == 1
    assert "gRPC /entai.v1.EntaiInference/Predict PERMISSION_DENIED " in grpc_lines[0]


# --- Resource-scoped RBAC: one allow/deny matrix over HTTP, gRPC and the Python client --

USER_VIEW_REFS = [f"{demo.user_stats.name}:{f.name}" for f in demo.user_stats.schema[:2]]


@pytest.fixture(scope="module")
def scoped_tokens(platform: Platform) -> dict[str, str]:
    from entai.actors.governance import GovernanceChecker
    from entai.actors.services import Services

    governance = Services.of(platform.settings).governance()
    tokens = {}
    for principal in ("served-app", "other-app"):
        tokens[principal], _ = governance.call(
            GovernanceChecker.create_token, platform.admin, principal
        )
    return tokens


# (what is done, principal) -> allowed; each "what" is asked the same over every channel.
RBAC_MATRIX = {
    ("predict", "served-app"): True,
    ("predict", "other-app"): False,  # predict is granted, on model:fraud_* only
    ("read user view", "served-app"): True,
    ("read user view", "other-app"): False,  # features:read on view:product_* only
    ("write events", "served-app"): True,
    ("write events", "other-app"): False,  # events:write on source:clickstream only
}


@pytest.mark.parametrize(("what", "principal"), list(RBAC_MATRIX))
def test_scoped_roles_allow_exactly_their_resources_over_http_and_grpc(
    platform: Platform,
    client: httpx.Client,
    grpc_stubs: Path,
    scoped_tokens: dict[str, str],
    what: str,
    principal: str,
) -> None:
    allowed = RBAC_MATRIX[(what, principal)]
    token = scoped_tokens[principal]
    entities = {"user_id": [3], "category": ["books"]}
    if what == "predict":
        http = client.post(
            f"/v1/predict/{MODEL}", json={"entities": entities}, headers=platform.headers(token)
        )
        grpc_call = ("Predict", {"model": MODEL, "entities": grpc_client.columns(entities)})
    elif what == "read user view":
        body = {"features": USER_VIEW_REFS, "entities": {"user_id": [3]}}
        http = client.post("/v1/features/online", json=body, headers=platform.headers(token))
        request = {"features": {"names": USER_VIEW_REFS}}
        grpc_call = (
            "GetOnlineFeatures",
            {**request, "entities": grpc_client.columns({"user_id": [3]})},
        )
    else:
        body = {"source": "events", "events": [_view_event(f"ev-rbac-{principal}")]}
        http = client.post("/v1/events", json=body, headers=platform.headers(token))
        grpc_call = None  # the gRPC service has no event intake
    assert http.status_code == ({"write events": 202}.get(what, 200) if allowed else 403), http.text
    if not allowed:
        assert http.json()["error"]["code"] == "permission_denied", http.text
    if grpc_call is not None:
        (answer,) = over_grpc(platform, grpc_stubs, (*grpc_call, token))
        assert answer["code"] == ("OK" if allowed else "PERMISSION_DENIED"), answer


@pytest.mark.parametrize("principal", ["served-app", "other-app"])
def test_the_python_client_reads_only_the_views_its_token_may_read(
    platform: Platform, scoped_tokens: dict[str, str], principal: str
) -> None:
    import ray

    from entai.actors.monitoring import start_drift_monitor
    from entai.client import connect
    from entai.shared.core import PermissionDeniedError

    # connect() hands out every service of a platform; this module's runs no drift
    # monitor otherwise.
    monitor = start_drift_monitor(platform.settings, platform.settings.ray.namespace)
    ray.get(monitor.__ray_ready__.remote(), timeout=120)
    try:
        sdk = connect(
            ray.get_runtime_context().gcs_address,
            platform.settings,
            token=scoped_tokens[principal],
        )
    finally:
        ray.kill(monitor)

    def read() -> dict[str, Any]:
        return sdk.features.get_online_features(
            {demo.user_stats.name: [f.name for f in demo.user_stats.schema[:2]]},
            [{"user_id": 3}],
            {demo.user_stats.name: None},
        )

    if RBAC_MATRIX[("read user view", principal)]:
        (result, *_) = read()["results"]
        assert [str(s) for s in result["statuses"]] == ["PRESENT"]
    else:
        with pytest.raises(PermissionDeniedError, match="view:user_stats"):
            read()


# --- Serve autoscaling under a load ramp (a second app next to the module's) ----------

AUTOSCALE_APP = "entai-autoscale"
AUTOSCALE_PREFIX = "/autoscale"
# Short delays so a test sees both directions; the shipped ones are in serve_config.yaml.
AUTOSCALING = {
    "min_replicas": 1,
    "initial_replicas": 1,
    "max_replicas": 2,
    # The Model answers fast (most of a request's time is auth and the feature read in
    # the Ingress): at 1 its in-flight count hovers around the target and it flaps.
    "target_ongoing_requests": 0.25,
    "upscale_delay_s": 1,
    "downscale_delay_s": 2,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2,
}
RAMP_THREADS = (4, 8, 16)  # client threads running in each step of the ramp
RAMP_STEP_S = 2.0
# After the ramp's top, the load drops to HOLD_THREADS (still above what one replica of
# each deployment is meant to carry) until the new replicas run, at most HOLD_MAX_S: on
# 2 cores, 16 threads leave a starting replica (imports, model loads) little CPU.
HOLD_THREADS = 4
HOLD_MAX_S = 90.0
DOWNSCALE_WITHIN_S = 60.0


@dataclass
class ScaleTrace:
    """Replica counts of the autoscaling app over time, read the way `entai status` does."""

    started: float = field(default_factory=time.monotonic)
    peak_running: dict[str, int] = field(default_factory=dict)
    peak_target: dict[str, int] = field(default_factory=dict)
    first_target_above_1_s: dict[str, float] = field(default_factory=dict)
    first_running_above_1_s: dict[str, float] = field(default_factory=dict)

    def read(self) -> list[Any]:
        from entai.deployments.serve_status import read_serve_details, replica_counts

        details = read_serve_details()
        assert details is not None, "Serve is not running"
        rows = [r for r in replica_counts(details) if r.application == AUTOSCALE_APP]
        now = round(time.monotonic() - self.started, 1)
        for r in rows:
            self.peak_running[r.deployment] = max(self.peak_running.get(r.deployment, 0), r.running)
            self.peak_target[r.deployment] = max(self.peak_target.get(r.deployment, 0), r.target)
            if r.target > 1:
                self.first_target_above_1_s.setdefault(r.deployment, now)
            if r.running > 1:
                self.first_running_above_1_s.setdefault(r.deployment, now)
        return rows

    def scaled_up(self) -> bool:
        return bool(self.peak_running) and all(n > 1 for n in self.peak_running.values())


@pytest.fixture
def autoscaling_app(platform: Platform) -> Iterator[str]:
    """The same application with Ingress -> Model, both autoscaling per AUTOSCALING."""
    from ray import serve
    from serve_graph import options_app

    from entai.deployments.app import AppArgs

    args = AppArgs(
        model_name=MODEL,
        feature_service=demo.purchase_propensity.name,
        definitions_module=demo.__name__,
        settings=platform.settings,
        shadow=False,
        score_in_ingress=False,
        tap_flush_interval_s=0.5,
    )
    app = options_app(args, autoscaling_config=AUTOSCALING, ray_actor_options={"num_cpus": 0})
    serve.run(app, name=AUTOSCALE_APP, route_prefix=AUTOSCALE_PREFIX)
    yield f"{platform.url}{AUTOSCALE_PREFIX}"
    serve.delete(AUTOSCALE_APP)


def test_replicas_scale_up_under_a_ramp_and_back_down(
    platform: Platform, autoscaling_app: str
) -> None:
    trace = ScaleTrace()
    first = trace.read()
    assert {r.deployment for r in first} == {"Ingress", "Model"}
    assert all(r.autoscaling == "1-2" and r.target == 1 for r in first)

    stops = [threading.Event() for _ in range(max(RAMP_THREADS))]
    answers: list[int] = []

    def load(offset: int) -> None:
        with httpx.Client(base_url=autoscaling_app, timeout=60.0) as c:
            user = offset
            while not stops[offset].is_set():
                try:
                    r = c.post(
                        f"/v1/predict/{MODEL}",
                        json=predict_body(user % USERS, CATEGORIES[user % 3]),
                        headers=platform.headers(),
                    )
                    answers.append(r.status_code)
                except httpx.HTTPError:
                    answers.append(-1)  # no answer at all: counted as an error
                user += max(RAMP_THREADS)

    threads: list[threading.Thread] = []
    started = trace.started = time.monotonic()
    try:
        for step in RAMP_THREADS:
            while len(threads) < step:
                threads.append(threading.Thread(target=load, args=(len(threads),), daemon=True))
                threads[-1].start()
            step_end = time.monotonic() + RAMP_STEP_S
            while time.monotonic() < step_end:
                trace.read()
                time.sleep(0.25)
        for stop in stops[HOLD_THREADS:]:
            stop.set()
        held = time.monotonic()
        while not trace.scaled_up() and time.monotonic() - held < HOLD_MAX_S:
            trace.read()
            time.sleep(0.25)
        scaled_up_s = time.monotonic() - started
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(timeout=60)
    stopped = time.monotonic()
    rows = trace.read()
    while not all(r.running == r.target == 1 for r in rows):
        assert time.monotonic() - stopped < DOWNSCALE_WITHIN_S, rows
        time.sleep(0.25)
        rows = trace.read()
    figures = {
        "ramp_threads": RAMP_THREADS,
        "hold_threads": HOLD_THREADS,
        "requests": len(answers),
        "non_200": sum(code != 200 for code in answers),
        "peak_running": trace.peak_running,
        "peak_target": trace.peak_target,
        "target_above_1_at_s": trace.first_target_above_1_s,
        "running_above_1_at_s": trace.first_running_above_1_s,
        "scaled_up_s": round(scaled_up_s, 1),
        "back_to_min_s": round(time.monotonic() - stopped, 1),
    }
    print(json.dumps(figures))  # the figures, for the report (pytest -s)
    assert trace.scaled_up(), figures
    assert all(n > 1 for n in trace.peak_target.values()), figures
    assert all(n <= AUTOSCALING["max_replicas"] for n in trace.peak_running.values()), figures
    assert figures["non_200"] == 0, figures


# --- Property-based checks against the app's own OpenAPI schema (schemathesis 4.x) ----


def test_no_server_error_and_no_schema_violation(platform: Platform) -> None:
    """Every documented operation, fed generated valid and invalid bodies.

    Every generated request must get a response that is not a 5xx and that matches the
    documented response schema. The drift monitor runs, so the monitoring routes answer
    too. Driven through schemathesis' Python API rather than its pytest plugin, whose
    test-node hooks do not match pytest 9.
    """
    import ray
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    from entai.actors.monitoring import start_drift_monitor

    namespace = platform.settings.ray.namespace
    monitor = start_drift_monitor(platform.settings, namespace)
    ray.get(monitor.__ray_ready__.remote(), timeout=120)
    try:
        schema = schemathesis.openapi.from_url(f"{platform.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8, "the OpenAPI schema lost operations"
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            def check(case: Any) -> None:
                case.call_and_validate(
                    headers=platform.headers(platform.admin),
                    checks=[not_a_server_error, response_schema_conformance],
                )

            check()
    finally:
        ray.kill(monitor)
