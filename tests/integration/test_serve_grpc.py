"""gRPC through Serve's gRPC proxy: the same answers as HTTP, the same auth.

One application for the module, deployed once by :func:`deploy_platform` and served
over HTTP (8124) and gRPC (9124). The gRPC client is compiled from ``entai.proto`` into
``tmp_path`` with grpcio-tools and runs in its own process (``grpc_client.py``), as a
team's service in another language would: it shares no code with the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from test_serve_http import CATEGORIES, MODEL, Platform, deploy_platform, teardown_platform

from entai.demo import features as demo

HERE = Path(__file__).parent
HTTP_PORT, GRPC_PORT = 8124, 9124
ZERO_TIME = "1970-01-01T00:00:00Z"  # proto JSON of the zero Timestamp: HTTP's null

Call = tuple[str, dict[str, Any], str | None]  # method, request (proto JSON), token


def wait_for_grpc_route(app_name: str) -> None:
    """Until Serve's gRPC proxy lists the application (its route table is updated)."""
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{GRPC_PORT}") as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        serve_api = serve_pb2_grpc.RayServeAPIServiceStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = serve_api.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=10)
            if app_name in listed.application_names:
                return
            time.sleep(0.2)
    pytest.fail(f"the gRPC proxy never listed {app_name}")


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(
        tmp_path_factory.mktemp("serve-grpc"),
        port=HTTP_PORT,
        grpc_port=GRPC_PORT,
        canary_percent=20.0,
        shadow=False,
    )
    try:
        wait_for_grpc_route(deployed.app_name)
        yield deployed
    finally:
        teardown_platform(deployed)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``entai_pb2`` and ``entai_pb2_grpc`` compiled from the repository's entai.proto."""
    from grpc_tools import protoc

    import entai.deployments.proto as package

    proto = Path(package.__file__).with_name("entai.proto")
    out = tmp_path_factory.mktemp("grpc-client")
    well_known = Path(protoc.__file__).with_name("_proto")
    includes = [f"-I{proto.parent}", f"-I{well_known}"]
    outputs = [f"--python_out={out}", f"--grpc_python_out={out}"]
    assert protoc.main(["protoc", *includes, *outputs, str(proto)]) == 0
    return out


@pytest.fixture(scope="module")
def http(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, timeout=60.0) as client:
        yield client


def over_grpc(platform: Platform, stubs: Path, *calls: Call) -> list[dict[str, Any]]:
    """The answers of the out-of-process client to ``calls``, in order."""
    payload = [
        {
            "method": method,
            "request": request,
            "metadata": [["application", platform.app_name]]
            + ([] if token is None else [["authorization", f"Bearer {token}"]]),
        }
        for method, request, token in calls
    ]
    client = [sys.executable, str(HERE / "grpc_client.py"), str(stubs), f"127.0.0.1:{GRPC_PORT}"]
    done = subprocess.run(
        client, input=json.dumps(payload), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def columns(entities: dict[str, list[Any]]) -> dict[str, Any]:
    """HTTP entities as proto JSON ``EntityColumn``s."""
    return {
        key: {"int64_values": {"values": values}}
        if all(isinstance(v, int) for v in values)
        else {"string_values": {"values": values}}
        for key, values in entities.items()
    }


def plain(value: dict[str, Any]) -> Any:
    """A ``FeatureValue`` in proto JSON as the HTTP API's JSON value."""
    if not value:
        return None
    ((kind, held),) = value.items()
    return int(held) if kind == "int64_value" else held


def instant(text: str | None, *, null: str | None) -> datetime | None:
    """An event timestamp of either API as a datetime; ``null`` marks "no value"."""
    return None if text == null or text is None else datetime.fromisoformat(text)


def test_predictions_equal_the_http_answers(
    platform: Platform, stubs: Path, http: httpx.Client
) -> None:
    users = list(range(40))
    entities = {"user_id": users, "category": [CATEGORIES[u % 3] for u in users]}
    response = http.post(
        f"/v1/predict/{MODEL}", json={"entities": entities}, headers=platform.headers()
    )
    assert response.status_code == 200, response.text
    expected = response.json()
    request = {"model": MODEL, "entities": columns(entities)}
    (answer,) = over_grpc(platform, stubs, ("Predict", request, platform.app_token))
    assert answer["code"] == "OK", answer["details"]
    got = answer["response"]
    assert got["model"] == expected["model"] == MODEL
    assert got["predictions"] == expected["predictions"]
    assert [int(v) for v in got["versions"]] == expected["versions"]
    assert int(got["version"]) == expected["version"]
    assert len(set(expected["versions"])) == 2, "the 20 % canary splits these 40 entities"
    assert got["request_id"] == answer["trailing"]["request_id"] != expected["request_id"]


@pytest.mark.parametrize("source", ["feature_service", "features"])
def test_online_features_equal_the_http_answers(
    platform: Platform, stubs: Path, http: httpx.Client, source: str
) -> None:
    entities = {"user_id": [3, 4, 99_999], "category": ["tools", "books", "games"]}
    body: dict[str, Any] = {"feature_service": demo.purchase_propensity.name}
    if source == "features":
        refs = [f"{demo.user_stats.name}:{f.name}" for f in demo.user_stats.schema[:3]]
        body = {"features": refs, "full_feature_names": True}
    response = http.post(
        "/v1/features/online",
        json={**body, "entities": entities},
        headers=platform.headers(platform.analyst),
    )
    assert response.status_code == 200, response.text
    expected = response.json()
    grpc_body = {**body, "features": {"names": body["features"]}} if "features" in body else body
    request = {**grpc_body, "entities": columns(entities)}
    (answer,) = over_grpc(platform, stubs, ("GetOnlineFeatures", request, platform.analyst))
    assert answer["code"] == "OK", answer["details"]
    got = answer["response"]
    assert got["metadata"]["feature_names"] == expected["metadata"]["feature_names"]
    assert len(got["results"]) == len(expected["results"]) > 0
    for mine, theirs in zip(got["results"], expected["results"], strict=True):
        assert [plain(v) for v in mine["values"]] == theirs["values"]
        assert mine["statuses"] == theirs["statuses"]
        assert [instant(t, null=ZERO_TIME) for t in mine["event_timestamps"]] == [
            instant(t, null=None) for t in theirs["event_timestamps"]
        ]
        assert mine["statuses"][2] == "NOT_FOUND"  # user 99,999 has no stored values


GOOD = {"user_id": [1], "category": ["books"]}
# case: (method, model or online body, entities, token role, gRPC code, entai error code)
REFUSALS: dict[str, tuple[str, Any, dict[str, list[Any]], str | None, str, str]] = {
    "no_token": ("Predict", MODEL, GOOD, None, "UNAUTHENTICATED", "unauthenticated"),
    "bad_token": ("Predict", MODEL, GOOD, "bogus", "UNAUTHENTICATED", "unauthenticated"),
    "not_allowed_to_predict": (
        "Predict",
        MODEL,
        GOOD,
        "analyst",
        "PERMISSION_DENIED",
        "permission_denied",
    ),
    "not_allowed_to_read_features": (
        "GetOnlineFeatures",
        {"feature_service": demo.purchase_propensity.name},
        GOOD,
        "app",
        "PERMISSION_DENIED",
        "permission_denied",
    ),
    "unknown_model": ("Predict", "no_such_model", GOOD, "app", "NOT_FOUND", "not_found"),
    "missing_join_key": (
        "Predict",
        MODEL,
        {"user_id": [1]},
        "app",
        "INVALID_ARGUMENT",
        "invalid_input",
    ),
    "uneven_entities": (
        "Predict",
        MODEL,
        {"user_id": [1, 2], "category": ["books"]},
        "app",
        "INVALID_ARGUMENT",
        "invalid_input",
    ),
    "no_feature_source": (
        "GetOnlineFeatures",
        {},
        GOOD,
        "analyst",
        "INVALID_ARGUMENT",
        "invalid_input",
    ),
}


@pytest.fixture(scope="module")
def refusals(platform: Platform, stubs: Path, http: httpx.Client) -> dict[str, Any]:
    """Per case: the gRPC answer and the HTTP answer to the same request."""
    tokens = {
        None: None,
        "bogus": "not-a-real-token",
        "app": platform.app_token,
        "analyst": platform.analyst,
    }
    calls: list[Call] = []
    http_answers = []
    for method, target, entities, role, _, _ in REFUSALS.values():
        token = tokens[role]
        headers = {} if token is None else platform.headers(token)
        if method == "Predict":
            calls.append((method, {"model": target, "entities": columns(entities)}, token))
            path, body = f"/v1/predict/{target}", {"entities": entities}
        else:
            calls.append((method, {**target, "entities": columns(entities)}, token))
            path, body = "/v1/features/online", {**target, "entities": entities}
        http_answers.append(http.post(path, json=body, headers=headers))
    answers = over_grpc(platform, stubs, *calls)
    return dict(zip(REFUSALS, zip(answers, http_answers, strict=True), strict=True))


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_calls_end_with_the_status_of_the_http_answer(
    refusals: dict[str, Any], case: str
) -> None:
    *_, code, entai_code = REFUSALS[case]
    answer, http_answer = refusals[case]
    assert answer["code"] == code, answer
    assert answer["details"]
    assert answer["trailing"]["entai-error-code"] == entai_code
    assert answer["trailing"]["request_id"]
    assert http_answer.json()["error"]["code"] == entai_code
