"""Production boot: the platform started with exactly the environment the KubeRay
manifests give the head pod, on real servers, keeps its governance state across a
restart of the head's services.

The environment is parsed from ``cluster/kuberay/raycluster.yaml`` (the head
container's ``env``, which every pod shares). Only what points outside the pod is
substituted: each ``secretKeyRef`` by a value for this machine (keys, the Ray token,
the DSNs and the Redis URL of the local servers), ``ENTAI_HOME`` and the policy file
(the ConfigMap mount) by paths under the test's directory. Added, because one machine
runs it: ``AWS_ENDPOINT_URL`` (the S3-compatible server the test starts: moto's server
mode), ports no other test uses, ``ENTAI_RAY__NUM_CPUS``, and the node's TLS pair (what
each pod's init container writes with ``entai tls node-cert``), signed by a CA the test
makes, for the address Ray picks for this machine: Ray runs with ``RAY_USE_TLS=1``.

Servers: the lake and MLflow's artifacts on moto (buckets ``entai-lake`` and
``entai-mlflow``, as in the manifests); Redis 127.0.0.1:6379 in DB index 12 (keys under
the manifests' prefix ``entai`` deleted afterwards); PostgreSQL 127.0.0.1:5432 database
``test``, MLflow and the governance state in one schema and the audit anchors in a
second (both dropped afterwards). Missing Redis or PostgreSQL fail the test.

Driven: ``entai up``; ``entai tokens bootstrap`` (a second one refused); tokens created
for an analyst and an approver; a model registered and promoted to ``champion`` by
the approver through the gates; the manifests' Serve application deployed (its
``serveConfigV2``); the HTTP API read with the analyst's token (200), the token
revoked (401), an erasure through ``POST /v1/governance/erase``. Then ``entai down``
and ``entai up`` again: every token (the revoked one still refused), the champion
alias and every audit entry are found, and ``entai audit verify`` passes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster_ca import write_ca
from ray.util import get_node_ip_address

from entai.actors.core import write_node_certificate

pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
RAYCLUSTER = ROOT / "cluster" / "kuberay" / "raycluster.yaml"
RAYSERVICE = ROOT / "cluster" / "kuberay" / "rayservice.yaml"
GCS_PORT, DASHBOARD_PORT, SERVE_PORT, GRPC_PORT = 6394, 8281, 8016, 9016
HAPROXY_STATS_PORT, HAPROXY_METRICS_PORT = 8416, 9116
REDIS_DB = 12
PG = "postgresql://postgres@127.0.0.1:5432/test"
MODEL = "purchase_propensity"  # the model the manifests' Serve application serves
POLICY = """
version: 1
pii_mode: mask
restricted_pii: [identifier, sensitive]
roles:
  admin: [admin]
  analyst: [features:read]
  approver: [models:approve]
  trainer: [models:register]
  app: [features:read, predict]
principals:
  admin: {roles: [admin]}
  alice: {roles: [analyst]}
  approver: {roles: [approver]}
  registrar: {roles: [trainer]}
"""


def _require(name: str, port: int) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return
    except OSError:
        pytest.fail(
            f"{name} is not answering on 127.0.0.1:{port}; the production-boot test needs "
            f"the real server (.ci/run starts it; locally start {name} on that port)",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def head_env_entries() -> list[dict[str, Any]]:
    """The head container's ``env`` in the shipped RayCluster manifest."""
    doc = yaml.safe_load(RAYCLUSTER.read_text())
    containers = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    (head,) = [c for c in containers if c["name"] == "ray-head"]
    return list(head["env"])


@dataclass
class Servers:
    """Where the test's lake, online store and databases are, and their secrets."""

    s3_endpoint: str
    schema: str
    anchor_schema: str
    secrets: dict[tuple[str, str], str]


def _pg(statement: str) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(PG, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL database 'test' is not reachable at 127.0.0.1:5432 ({exc})",
            pytrace=False,
        )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _dsn(schema: str) -> str:
    return f"{PG}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """moto's S3 server with the manifests' buckets; schemas in PostgreSQL; Redis DB 12."""
    import boto3
    import redis
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request lines
    _require("Redis", 6379)
    _require("PostgreSQL", 5432)
    run = uuid.uuid4().hex[:8]
    schema, anchor_schema = f"entai_boot_{run}", f"entai_boot_{run}_anchors"
    _pg(f"CREATE SCHEMA {schema}")
    _pg(f"CREATE SCHEMA {anchor_schema}")
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
        region_name="eu-west-1",
    )
    for bucket in ("entai-lake", "entai-mlflow"):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    values = {
        ("entai-ray-auth", "token"): secrets.token_hex(32),
        ("entai-secrets", "hmac-key"): secrets.token_hex(32),
        ("entai-secrets", "audit-key"): secrets.token_hex(32),
        ("entai-secrets", "service-secret"): secrets.token_hex(32),
        ("entai-secrets", "online-store-url"): f"redis://127.0.0.1:6379/{REDIS_DB}",
        ("entai-secrets", "mlflow-tracking-uri"): _dsn(schema),
        ("entai-secrets", "governance-dsn"): _dsn(schema),
        ("entai-secrets", "audit-anchor-dsn"): _dsn(anchor_schema),
        ("entai-secrets", "gcs-redis-password"): "unused",
        ("entai-object-store", "access-key-id"): "test-key",
        ("entai-object-store", "secret-access-key"): "test-secret",
        ("entai-bootstrap", "secret"): secrets.token_hex(32),
    }
    try:
        yield Servers(endpoint, schema, anchor_schema, values)
    finally:
        moto.stop()
        client = redis.Redis.from_url(values[("entai-secrets", "online-store-url")])
        for key in client.scan_iter("entai*", count=1000):
            client.delete(key)
        client.close()
        _pg(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        _pg(f"DROP SCHEMA IF EXISTS {anchor_schema} CASCADE")


def platform_env(servers: Servers, home: Path) -> dict[str, str]:
    """The manifests' head environment with this machine's endpoints and secrets."""
    (home / "user").mkdir(parents=True, exist_ok=True)
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "policy.yaml").write_text(POLICY)
    local_paths = {
        "ENTAI_HOME": str(home / "entai"),
        "ENTAI_SECURITY__POLICY_FILE": str(home / "config" / "policy.yaml"),
    }
    env: dict[str, str] = {
        k: v for k, v in os.environ.items() if not k.startswith(("ENTAI_", "RAY_", "AWS_"))
    }
    for entry in head_env_entries():
        name = entry["name"]
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[name] = servers.secrets[(ref["name"], ref["key"])]
        else:
            env[name] = local_paths.get(name, str(entry["value"]))
    # Ray's TLS as the pods run it: the pair each pod's init container writes with
    # `entai tls node-cert --ip $(POD_IP)`, here for the address Ray picks for this
    # node (its certificate must name it: Ray's processes dial each other there).
    pair = write_node_certificate(
        write_ca(home / "ray-ca"), home / "ray-tls", ips=[get_node_ip_address()]
    )
    tls_files = {
        "RAY_TLS_SERVER_CERT": pair.cert,
        "RAY_TLS_SERVER_KEY": pair.key,
        "RAY_TLS_CA_CERT": pair.ca_cert,
    }
    env.update({name: str(path) for name, path in tls_files.items()})
    env.update(
        {
            "AWS_ENDPOINT_URL": servers.s3_endpoint,
            "HOME": str(home / "user"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "ENTAI_RAY__DASHBOARD_PORT": str(DASHBOARD_PORT),
            "ENTAI_RAY__NUM_CPUS": "2",
            "ENTAI_SERVE__PORT": str(SERVE_PORT),
            "ENTAI_SERVE__GRPC_PORT": str(GRPC_PORT),
            # HAProxy's stats and metrics pages, off the defaults the chaos tier's
            # HAProxy test uses (that `entai down` stops HAProxy and frees its ports
            # is checked by test_down_stops_haproxy.py).
            "RAY_SERVE_HAPROXY_STATS_PORT": str(HAPROXY_STATS_PORT),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(HAPROXY_METRICS_PORT),
            "COLUMNS": "200",
        }
    )
    return env


def _entai(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("entai")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr, (args, done.stdout, done.stderr)
    return done


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout[-4000:], done.stderr[-4000:])
    return done.stdout


def _refused(done: subprocess.CompletedProcess[str], reason: str) -> None:
    """A command that failed with one `error:` message (the console may wrap it)."""
    text = done.stdout + done.stderr
    flat = " ".join(text.split())
    assert done.returncode != 0, text
    assert flat.startswith("error:") and flat.count("error:") == 1 and reason in flat, text


def _shown_token(stdout: str) -> str:
    found = re.findall(r"entai_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", stdout)
    assert len(found) == 1, stdout
    return found[0]


_REGISTER = """
import os
import mlflow, mlflow.xgboost, numpy as np, xgboost as xgb
from entai.actors.backends import configure_mlflow
from entai.actors.models import ModelRegistry
from entai.client import registry_service
from entai.demo import features as demo
from entai.shared.models import ModelCard, TrainingDataSummary
from entai.shared.settings import load_settings

MODEL = "__MODEL__"
settings = load_settings().resolved()
registry = registry_service(settings)
configure_mlflow(settings.mlflow)
rng = np.random.default_rng(3)
x = rng.normal(size=(300, len(demo.MODEL_FEATURES)))
y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
data = xgb.DMatrix(x, label=y, feature_names=list(demo.MODEL_FEATURES))
booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, data, num_boost_round=4)
with mlflow.start_run():
    logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
card = ModelCard(
    model_name=MODEL,
    intended_use="Production-boot test of the governance path.",
    training_data=TrainingDataSummary(
        dataset_id="ts-production-boot", feature_service=MODEL, rows=300
    ),
    metrics={"valid_auc": 0.9},
    limitations=("Synthetic data only.",),
    owners=("ml-team",),
)
info = registry.call(
    ModelRegistry.register, logged.model_uri, MODEL, token=os.environ["ENTAI_TOKEN"],
    metrics={"valid_auc": 0.9}, card=card,
)
print("VERSION", info.version)
""".replace("__MODEL__", MODEL)


def _serve_config(path: Path) -> Path:
    """The manifests' serveConfigV2, listening on this machine's free ports."""
    doc = yaml.safe_load(RAYSERVICE.read_text())
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config["http_options"].update({"host": "127.0.0.1", "port": SERVE_PORT})
    config["grpc_options"]["port"] = GRPC_PORT
    path.write_text(yaml.safe_dump(config))
    return path


def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1.0)


def _audit(env: dict[str, str], admin: str) -> list[dict[str, Any]]:
    """Every audit entry, through `entai audit export` (the CLI's query shows a table)."""
    bundle = Path(env["ENTAI_HOME"]).parent / f"audit-{uuid.uuid4().hex[:6]}.bundle"
    _ok(_entai(env, "audit", "export", "-o", str(bundle), "--token", admin))
    verified = _ok(_entai(env, "audit", "verify", "--bundle", str(bundle)))
    assert "chain intact" in verified, verified
    with zipfile.ZipFile(bundle) as archive:
        lines = archive.read("entries.jsonl").decode().splitlines()
    return [json.loads(line) for line in lines]


def test_the_manifests_environment_boots_and_keeps_governance_across_a_restart(
    servers: Servers, tmp_path: Path
) -> None:
    env = platform_env(servers, tmp_path)
    assert env["ENTAI_SECURITY__MODE"] == "production"
    assert env["ENTAI_LAKE__ROOT"].startswith("s3://")
    up = _entai(env, "up", "--gcs-port", str(GCS_PORT), "--mlflow-port", "0")
    try:
        _ok(up)
        _drive_and_restart(env, tmp_path)
    finally:
        _entai(env, "down")


def _drive_and_restart(env: dict[str, str], tmp: Path) -> None:
    # -- the first admin token, once --------------------------------------------------
    boot = _ok(_entai(env, "tokens", "bootstrap"))
    admin = _shown_token(boot)
    _refused(_entai(env, "tokens", "bootstrap"), "the first admin token was already created")
    wrong = _entai(env, "tokens", "bootstrap", "--secret-file", str(_file(tmp, "x" * 40)))
    _refused(wrong, "the bootstrap secret is wrong")

    alice = _shown_token(_ok(_entai(env, "tokens", "create", "alice", "--token", admin)))
    approver = _shown_token(_ok(_entai(env, "tokens", "create", "approver", "--token", admin)))
    registrar = _shown_token(_ok(_entai(env, "tokens", "create", "registrar", "--token", admin)))

    # -- a model registered, then promoted by another principal through the gates ----
    registered = subprocess.run(
        [sys.executable, "-c", _REGISTER],
        env={**env, "ENTAI_TOKEN": registrar},  # a job is given its token so
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr[-4000:]
    version = registered.stdout.split("VERSION")[-1].strip()
    refused = _entai(env, "models", "promote", MODEL, version, "--token", alice)
    _refused(refused, "may not models:approve")
    promoted = _ok(_entai(env, "models", "promote", MODEL, version, "--token", approver))
    assert f"champion -> v{version} (approved by approver)" in promoted

    # -- the manifests' Serve application, read over HTTP -----------------------------
    _ok(_entai(env, "deploy", "--serve-config", str(_serve_config(tmp / "serve.yaml"))))
    url = f"http://127.0.0.1:{SERVE_PORT}"
    read = {"feature_service": MODEL, "entities": {"user_id": [42], "category": ["books"]}}
    answer = _read_features(url, alice, read)
    assert answer.status_code == 200, answer.text
    alice_id = alice.split("_")[1]
    _ok(_entai(env, "tokens", "revoke", alice_id, "--token", admin))
    _until(lambda: _read_features(url, alice, read).status_code == 401, 30, "401 after revoke")
    erased = httpx.post(
        f"{url}/v1/governance/erase",
        json={"entity": {"user_id": 42}, "reason": "production-boot test"},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=120,
    )
    assert erased.status_code == 202, erased.text
    receipt_url = url + erased.headers["location"]

    def _erasure_done() -> dict[str, Any] | None:
        answer = httpx.get(receipt_url, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        receipt: dict[str, Any] = answer.json()
        return None if receipt["status"] == "running" else receipt

    receipt = _until(_erasure_done, 180, "the erasure's receipt")
    assert receipt["status"] == "done", receipt
    before = _audit(env, admin)
    actions = {e["action"] for e in before}
    assert {"tokens:bootstrap", "tokens:create", "tokens:revoke", "governance:erase"} <= actions
    assert any(e["action"].startswith("models:") for e in before), actions

    # -- the head's services restart: everything is still there -----------------------
    _ok(_entai(env, "down"))
    _ok(_entai(env, "up", "--gcs-port", str(GCS_PORT), "--mlflow-port", "0"))
    listed = _ok(_entai(env, "tokens", "list", "--token", admin))
    for token in (admin, alice, approver):
        assert token.split("_")[1] in listed, listed
    _refused(_entai(env, "tokens", "list", "--token", alice), "is revoked")
    shown = _ok(_entai(env, "models", "show", MODEL))
    assert re.search(rf"champion -> v{version} by approver", shown), shown
    assert re.search(rf"\b{version}\s.*champion.*\sregistrar\s", shown), shown  # alias, registrant
    verify = _ok(_entai(env, "audit", "verify", "--token", admin))
    assert "chain intact" in verify, verify
    after = _audit(env, admin)
    assert after[: len(before)] == before
    _refused(_entai(env, "tokens", "bootstrap"), "the first admin token was already created")


def _file(tmp: Path, text: str) -> Path:
    path = tmp / f"secret-{uuid.uuid4().hex[:6]}"
    path.write_text(text)
    return path


def _read_features(url: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/features/online",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
