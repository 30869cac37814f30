"""`entai up` -> `entai status` -> `ray job submit ... -- entai train` -> `entai down`.

One head for the module, started by `entai up` in a fresh user home (no Ray token
yet, so `entai up` must create one): the platform's services answer and a client
reads through them; a Ray job trains on the feature data prepared in the same home and
its run lands in MLflow; `entai down` leaves no Ray process of ours behind. The last
test stops the head; the fixture only stops it again when a test failed before.

The job's driver runs on the head with the environment `entai up` started it with
(PATH to this virtualenv, ENTAI_HOME), finds the cluster through RAY_ADDRESS, and
trains on the data prepared here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)

GCS_PORT, DASHBOARD_PORT = 6391, 8277
MODEL = "job_propensity"
SERVICES = (
    "entai-feature-shard-0",
    "entai-feature-shard-1",
    "entai-governance",
    "entai-model-registry",
    "entai-drift-monitor",
    "entai-retrain-worker",
)


def _user_home(home: Path) -> str:
    """A fresh user home: no Ray token yet, so `entai up` must create one."""
    (home / "user").mkdir(exist_ok=True)
    return str(home / "user")


def _env(home: Path) -> dict[str, str]:
    return {
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
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _entai(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run([str(Path(sys.executable).with_name("entai")), *args], _env(home), timeout=timeout)


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
    env = _env(home)
    env.pop("ENTAI_TOKEN", None)
    return _run([sys.executable, "-c", code], env, timeout=300)


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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Head:
    """The module's `entai up` head: its home, the command's output, its process group."""

    home: Path
    job_dir: Path
    up: subprocess.CompletedProcess[str]
    pgid: int


@pytest.fixture(scope="module")
def head(
    tmp_path_factory: pytest.TempPathFactory, demo_training_data: Callable[..., Path]
) -> Iterator[Head]:
    home = tmp_path_factory.mktemp("cli-home")
    job_dir = home.parent / f"{home.name}-job"
    _write_job(job_dir, demo_training_data(home, n_users=300, days=40))
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
    assert f"127.0.0.1:{GCS_PORT}" in head.up.stdout
    status = _entai(head.home, "status")
    assert status.returncode == 0, status.stderr
    for name in SERVICES:
        assert name in status.stdout
    assert status.stdout.count("ALIVE") == 6
    client = _python(head.home, _CLIENT_READ)
    assert client.returncode == 0, client.stderr
    assert client.stdout.split() == ["NOT_FOUND", "AuthenticationError"]


def test_ray_job_submit_trains_and_the_run_is_in_mlflow(head: Head) -> None:
    from mlflow.tracking import MlflowClient

    from entai.shared.settings import EntaiSettings

    runtime_env = json.dumps({"env_vars": {"ENTAI_HOME": str(head.home)}})
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
    uri = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process default
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"], job.stdout[-4000:]
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["num_boost_round"] == "20"
    assert "valid_auc" in run.data.metrics
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"


def test_down_leaves_no_process_of_the_head_behind(head: Head) -> None:
    down = _entai(head.home, "down")
    assert down.returncode == 0, down.stderr
    assert "entai stopped" in down.stdout
    assert not _group_alive(head.pgid), "a process of the head's group survived `entai down`"
    assert not (head.home / "cluster.json").exists()
    again = _entai(head.home, "status")
    assert "not running" in again.stdout
