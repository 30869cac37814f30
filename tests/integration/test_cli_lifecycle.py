"""The README's lifecycle through the real `entai` command, each step a subprocess:
`up` -> `status` -> (a client, a Ray job) -> `demo --keep-running` -> a predict with
the printed token -> `ingest` -> commands against the running platform -> `down`.
First, commands against a platform that is not running.

One head for the module, started by `entai up` in a fresh user home (no Ray token
yet, so `entai up` must create one): its services answer and a client reads through
them; a Ray job trains on feature data prepared in the same home (another period
than the demo's) and its run lands in MLflow; the demo joins the same platform and
leaves its app serving; `entai down` leaves no process of ours behind and nothing
answering on its ports. The last test stops the head; the fixture only stops it
again when a test failed before.

Every command's output is checked for what must never be on the console: a Python
traceback, a JSON log line, a line of Ray's own logging. The log files under
`<home>/logs` have those records instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

GCS_PORT, DASHBOARD_PORT, SERVE_PORT = 6391, 8277, 8012
MODEL, DEMO_MODEL = "job_propensity", "purchase_propensity"
SERVICES = (
    "entai-feature-shard-0",
    "entai-feature-shard-1",
    "entai-governance",
    "entai-model-registry",
    "entai-drift-monitor",
    "entai-retrain-worker",
    "entai-scoring",
)
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING|ERROR)\b")
CONTRACT = """
source: clicks
purpose: lifecycle test
retention_days: 30
event_time: ts
key: [event_id]
columns:
  - {name: event_id, type: string, nullable: false}
  - {name: user_id, type: int64, nullable: false}
  - {name: amount, type: float64, min: 0}
  - {name: ts, type: timestamp}
"""
CLICKS = "event_id,user_id,amount,ts\ne1,1,2.5,2026-11-01T10:00:00Z\ne2,2,-1,2026-11-01T11:00:00Z\n"


def _user_home(home: Path) -> str:
    """A fresh user home: no Ray token yet, so `entai up` must create one."""
    (home / "user").mkdir(exist_ok=True)
    return str(home / "user")


def _env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HOME": _user_home(home),
        # The job's driver runs `entai` with the PATH the head was started with.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ENTAI_HOME": str(home),
        "ENTAI_RAY__DASHBOARD_PORT": str(DASHBOARD_PORT),
        # The session cluster's agent holds Ray's default agent port on this host, so
        # `entai up` must pick another one for the head's job agent by itself.
        "ENTAI_RAY__NUM_CPUS": "2",
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "2",
        "ENTAI_SERVE__PORT": str(SERVE_PORT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLUMNS": "200",
    }
    for inherited in ("RAY_ADDRESS", "ENTAI_TOKEN"):  # the command finds its own platform
        env.pop(inherited, None)
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _console_faults(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the console must never show: tracebacks, JSON log records, Ray's log lines."""
    faults = []
    for line in (done.stdout + done.stderr).splitlines():
        text = line.strip()
        if "Traceback" in text:
            faults.append(f"traceback: {text}")
        elif text.startswith("{") and '"logger"' in text:
            faults.append(f"JSON log line: {text[:200]}")
        elif RAY_LOG_LINE.match(text) or "(raylet)" in text:
            faults.append(f"Ray log line: {text[:200]}")
    return faults


def _entai(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = _run([str(Path(sys.executable).with_name("entai")), *args], _env(home), timeout)
    assert _console_faults(done) == [], (args, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A failed command's output: one `error:` line (or click's usage error) saying why."""
    assert done.returncode != 0, done.stdout
    text = (done.stdout + done.stderr).strip()
    errors = [ln for ln in text.splitlines() if ln.lower().startswith(("error:", "│ error", "╭"))]
    assert errors, text
    for needle in expected:
        assert needle in text, text
    return text


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0)
    except httpx.TransportError:
        return False
    return True


_CLIENT_READ = """
import entai
from entai.shared.core import AuthenticationError
client = entai.connect()
out = client.features.get_online_features({"v": ["f"]}, [{"user_id": 1}], {"v": None})
print(out["results"][0]["statuses"][0])
bad = entai.connect(token="entai_000000000000_" + "x" * 43)
try:
    bad.features.get_online_features({"v": ["f"]}, [{"user_id": 1}], {"v": None})
except AuthenticationError as exc:
    print(type(exc).__name__)
"""


def _python(home: Path, code: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", code], _env(home), timeout=300)


def _write_job(job_dir: Path, labels: Path) -> None:
    job_dir.mkdir()
    (job_dir / "train.yaml").write_text(
        f"""
model_name: {MODEL}
feature_service: purchase_propensity
definitions_module: entai.demo.features
label_source: {labels}
num_boost_round: 20
alias: challenger
card:
  intended_use: Test that a Ray job trains and registers.
  limitations: [Synthetic data only.]
  owners: [ml-team]
"""
    )


def _write_clicks(directory: Path) -> tuple[Path, Path]:
    (directory / "clicks.yaml").write_text(CONTRACT)
    (directory / "clicks.csv").write_text(CLICKS)
    return directory / "clicks.csv", directory / "clicks.yaml"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_commands_against_a_stopped_platform_say_what_to_do(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("stopped-home")
    csv, contract = _write_clicks(tmp_path_factory.mktemp("stopped-data"))
    status = _entai(home, "status")
    assert status.returncode == 1
    assert status.stdout.strip() == f"entai is not running under {home}: `entai up` starts it."
    down = _entai(home, "down")
    assert down.returncode == 0
    assert down.stdout.strip().startswith("nothing to stop")
    needs_platform = [
        ("materialize", "-d", "entai.demo.features"),
        ("features", "check-skew", "user_stats", "-d", "entai.demo.features"),
        ("monitor", "report", DEMO_MODEL),
    ]
    for args in needs_platform:
        _one_line_error(_entai(home, *args), "entai up")
    deploy = _entai(home, "deploy", "--serve-config", str(contract))
    _one_line_error(deploy, "entai is not up: run `entai up` first")
    wrong = _entai(home, "ingest", "orders", str(csv), "--contract", str(contract))
    _one_line_error(wrong, "is for source 'clicks', not 'orders'")
    # What needs no platform works without one.
    for args in (("models", "list"), ("tokens", "list"), ("audit", "verify")):
        done = _entai(home, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    # Ingestion needs only Ray: a temporary one, said in one line.
    ingest = _entai(home, "ingest", "clicks", str(csv), "--contract", str(contract))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    lines = ingest.stdout.strip().splitlines()
    assert lines[0].startswith("no entai platform is running: ingesting on a temporary local Ray")
    assert lines[-1].endswith("2 rows in = 1 accepted + 1 quarantined")
    assert not (home / "cluster.json").exists()


@dataclass
class Head:
    """The module's `entai up` head: its home, the command's output, its process group."""

    home: Path
    job_dir: Path
    up: subprocess.CompletedProcess[str]
    pgid: int
    demo: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def head(
    tmp_path_factory: pytest.TempPathFactory, demo_training_data: Callable[..., Path]
) -> Iterator[Head]:
    home = tmp_path_factory.mktemp("cli-home")
    job_dir = home.parent / f"{home.name}-job"
    # The job's feature data lies in another period than the demo's (the weeks before today),
    # so the two never share the views' point-in-time windows.
    labels = demo_training_data(home, n_users=300, days=40, start=datetime(2025, 1, 1, tzinfo=UTC))
    _write_job(job_dir, labels)
    up = _entai(home, "up", "--gcs-port", str(GCS_PORT))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        pgid = json.loads((home / "cluster.json").read_text())["pgid"]
        yield Head(home, job_dir, up, pgid)
    finally:
        if (home / "cluster.json").exists():  # a test failed before `entai down`
            _entai(home, "down")


def test_up_starts_a_token_head_whose_services_answer(head: Head) -> None:
    # The head runs with token auth even on a machine that never had a Ray token.
    assert (head.home / "user" / ".ray" / "auth_token").stat().st_size > 0
    assert f"entai is up at 127.0.0.1:{GCS_PORT} (7 services)" in head.up.stdout
    ui = json.loads((head.home / "mlflow-ui.json").read_text())
    assert f"MLflow UI: {ui['url']}" in head.up.stdout
    assert httpx.get(f"{ui['url']}/health", timeout=10.0).text == "OK"
    status = _entai(head.home, "status")
    assert status.returncode == 0, status.stderr
    for name in SERVICES:
        assert name in status.stdout
    assert status.stdout.count("ALIVE") == 7
    assert f"MLflow UI: {ui['url']}" in status.stdout
    again = _entai(head.home, "up", "--gcs-port", str(GCS_PORT))
    assert again.returncode == 0
    assert f"entai is already up at 127.0.0.1:{GCS_PORT}" in again.stdout
    client = _python(head.home, _CLIENT_READ)
    assert client.returncode == 0, client.stderr
    assert client.stdout.split() == ["NOT_FOUND", "AuthenticationError"]


def test_ray_job_submit_trains_and_the_run_is_in_mlflow(head: Head) -> None:
    from mlflow.tracking import MlflowClient

    from entai.shared.settings import EntaiSettings

    # The job registers as the principal of the token it is given ($ENTAI_TOKEN).
    created = _entai(head.home, "tokens", "create", "ml-engineer", "--ttl-hours", "1")
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip().splitlines()[-1]
    runtime_env = json.dumps({"env_vars": {"ENTAI_HOME": str(head.home), "ENTAI_TOKEN": token}})
    submit = [
        str(Path(sys.executable).with_name("ray")), "job", "submit",
        "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
        "--working-dir", str(head.job_dir),
        "--runtime-env-json", runtime_env,
        "--", "entai", "train", "--config", "train.yaml",
    ]  # fmt: skip
    # Ray's CLI sends the cluster token (~/.ray/auth_token) only in token mode.
    env = {**_env(head.home), "RAY_AUTH_MODE": "token"}
    deadline = time.monotonic() + 120
    while True:  # the head's job agent may still be starting just after `entai up`
        job = _run(submit, env, timeout=600)
        if "No available agent" not in job.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout

    settings = EntaiSettings(home=head.home).resolved()
    uri = settings.mlflow.tracking_uri.get_secret_value()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process default
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"], job.stdout[-4000:]
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["num_boost_round"] == "20"
    assert "valid_auc" in run.data.metrics
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
    assert versions[0].tags["entai.registrant"] == "ml-engineer"  # the token's principal


def test_score_commands_run_on_the_platforms_scoring_service(head: Head) -> None:
    import numpy as np
    import pandas as pd

    # A bad input first: one line naming what the model takes.
    pd.DataFrame({"user_id": [1]}).to_parquet(head.job_dir / "ids.parquet")
    bad = _entai(head.home, "score", f"{MODEL}/1", "--input", str(head.job_dir / "ids.parquet"))
    found = re.search(r"its inputs: (\[[^\]]*\])", _one_line_error(bad, "lacks column(s)"))
    assert found is not None
    inputs = json.loads(found.group(1).replace("'", '"'))
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.uniform(0, 5, size=(3_000, len(inputs))), columns=inputs)
    frame.insert(0, "user_id", np.arange(3_000))
    frame.to_parquet(head.job_dir / "users.parquet")
    # Two separate commands, as a user runs them: each joins and uses the service.
    outputs = []
    for run in ("a", "b"):
        out = head.job_dir / f"scores-{run}"
        done = _entai(
            head.home, "score", f"{MODEL}/1", "--input", str(head.job_dir / "users.parquet"),
            "--output", str(out), "--part-rows", "1000",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "no entai platform" not in done.stdout  # it joined the running one
        assert f"3,000 rows scored by {MODEL} v1 -> {out}" in done.stdout
        outputs.append(pd.read_parquet(out).sort_values("user_id", ignore_index=True))
    assert outputs[0]["user_id"].tolist() == list(range(3_000))
    assert outputs[0]["prediction"].between(0, 1).all()
    assert outputs[0]["prediction"].tolist() == outputs[1]["prediction"].tolist()
    status = _entai(head.home, "status")
    assert re.search(r"entai-scoring\W+ALIVE", status.stdout), status.stdout


def _closing_lines(stdout: str) -> dict[str, str]:
    """The demo's closing `name: value` lines (API, OpenAPI, ..., token)."""
    found = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep and name in {"API", "OpenAPI", "Ray dashboard", "MLflow UI", "token"}:
            found[name] = value.strip()
    return found


def test_demo_keep_running_joins_the_platform_and_leaves_it_serving(head: Head) -> None:
    demo = _entai(head.home, "demo", "--keep-running", "--users", "300", timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert f"join the running platform at 127.0.0.1:{GCS_PORT}" in out
    assert "predict and recommend over HTTP" in out
    assert "entai is running: `entai status` shows it, `entai down` stops it." in out
    closing = _closing_lines(out)
    ui = json.loads((head.home / "mlflow-ui.json").read_text())["url"]
    assert closing["API"] == f"http://127.0.0.1:{SERVE_PORT}"
    assert closing["OpenAPI"] == f"http://127.0.0.1:{SERVE_PORT}/docs"
    assert closing["Ray dashboard"] == f"http://127.0.0.1:{DASHBOARD_PORT}"
    assert closing["MLflow UI"] == ui
    assert closing["token"].startswith("entai_")
    admin = (head.home / "admin_token").read_text().strip()
    assert admin not in out  # the printed token is a predict-only one, never the admin's
    head.demo.update(closing)
    # The log files have what the console did not show.
    records = [json.loads(x) for x in (head.home / "logs" / "entai.log").read_text().splitlines()]
    assert any(r["logger"].startswith("entai.pipelines") for r in records)
    assert "Connecting to existing Ray cluster" in (head.home / "logs" / "output.log").read_text()


def test_a_predict_with_the_printed_token_answers(head: Head) -> None:
    assert head.demo, "the demo did not run"
    body = {"entities": {"user_id": [1, 2], "category": ["books", "electronics"]}}
    answer = httpx.post(
        f"{head.demo['API']}/v1/predict/{DEMO_MODEL}",
        json=body,
        headers={"Authorization": f"Bearer {head.demo['token']}"},
        timeout=30.0,
    )
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["model"] == DEMO_MODEL and len(payload["predictions"]) == 2
    # the token is for predictions only
    refused = httpx.get(
        f"{head.demo['API']}/v1/monitoring/{DEMO_MODEL}",
        headers={"Authorization": f"Bearer {head.demo['token']}"},
        timeout=30.0,
    )
    assert refused.status_code == 403, refused.text
    status = _entai(head.home, "status")
    assert status.returncode == 0
    assert "entai (RUNNING)" in status.stdout


def test_ingest_joins_the_running_platform(head: Head) -> None:
    csv, contract = _write_clicks(head.job_dir)
    ingest = _entai(head.home, "ingest", "clicks", str(csv), "--contract", str(contract))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    lines = ingest.stdout.strip().splitlines()  # no "temporary Ray" line: it joined
    assert len(lines) == 1 and lines[0].endswith("2 rows in = 1 accepted + 1 quarantined")


def test_commands_against_the_running_platform_work_or_say_why(head: Head) -> None:
    models = _entai(head.home, "models", "list")
    assert models.returncode == 0 and DEMO_MODEL in models.stdout
    audit = _entai(head.home, "audit", "verify")
    assert audit.returncode == 0 and "chain intact" in audit.stdout
    report = _entai(head.home, "monitor", "report", DEMO_MODEL)
    assert report.returncode == 0, report.stdout + report.stderr
    missing = _entai(head.home, "monitor", "report", "no_such_model")
    _one_line_error(missing, "'no_such_model' is not registered with the drift monitor")
    bad_defs = _entai(head.home, "materialize", "-d", "no.such.definitions")
    _one_line_error(bad_defs, "no.such.definitions")


def _names_the_head(ray_address_file: Path) -> bool:
    return ray_address_file.read_text().strip().endswith(f":{GCS_PORT}")


def test_down_leaves_no_process_of_the_head_behind(head: Head) -> None:
    from ray._common.utils import get_ray_address_file

    ray_address_file = Path(get_ray_address_file(None))
    assert _names_the_head(ray_address_file)  # `ray start` recorded the head there
    ui_pgid = json.loads((head.home / "mlflow-ui.json").read_text())["pgid"]
    ui_port = int(json.loads((head.home / "mlflow-ui.json").read_text())["url"].rsplit(":", 1)[1])
    down = _entai(head.home, "down")
    assert down.returncode == 0, down.stderr
    assert "entai stopped" in down.stdout
    assert not _group_alive(head.pgid), "a process of the head's group survived `entai down`"
    assert not _group_alive(ui_pgid), "a process of the MLflow UI survived `entai down`"
    assert not (head.home / "cluster.json").exists()
    assert not (head.home / "mlflow-ui.json").exists()
    for port in (SERVE_PORT, ui_port, DASHBOARD_PORT):
        assert not _answers(port), f"something still answers on {port} after `entai down`"
    again = _entai(head.home, "status")
    assert again.returncode == 1 and "not running" in again.stdout
    # nor Ray's record of it as the machine's cluster, which a bare ray.init() would join
    assert not ray_address_file.exists() or not _names_the_head(ray_address_file)
