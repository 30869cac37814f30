"""`ray job submit ... -- entai train` against an `entai up` head: the run lands in MLflow.

The job's driver runs on the head with the environment `entai up` started it with
(PATH to this virtualenv, ENTAI_HOME), finds the cluster through RAY_ADDRESS, and
trains on the feature data prepared here in the same home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

GCS_PORT, DASHBOARD_PORT = 6392, 8278
MODEL = "job_propensity"


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ENTAI_HOME": str(home),
        "ENTAI_RAY__DASHBOARD_PORT": str(DASHBOARD_PORT),
        # The session cluster's agent holds Ray's default agent port on this host, so
        # `entai up` must pick another one for the head's job agent by itself.
        "ENTAI_RAY__NUM_CPUS": "2",
        "ENTAI_ONLINE_STORE__NUM_SHARDS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's CLI sends the cluster token (~/.ray/auth_token) only in token mode.
        "RAY_AUTH_MODE": "token",
    }


def _run(cmd: list[str], home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=_env(home), capture_output=True, text=True, timeout=timeout, check=False
    )


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


@pytest.mark.timeout(900)
def test_ray_job_submit_trains_and_the_run_is_in_mlflow(
    tmp_path: Path, demo_training_data: Callable[..., Path]
) -> None:
    from mlflow.tracking import MlflowClient

    from entai.shared.settings import EntaiSettings

    home, job_dir = tmp_path / "home", tmp_path / "job"
    home.mkdir()
    _write_job(job_dir, demo_training_data(home, n_users=300, days=40))
    entai = str(Path(sys.executable).with_name("entai"))
    up = _run([entai, "up", "--gcs-port", str(GCS_PORT)], home, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        runtime_env = json.dumps({"env_vars": {"ENTAI_HOME": str(home)}})
        submit = [
            str(Path(sys.executable).with_name("ray")), "job", "submit",
            "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
            "--working-dir", str(job_dir),
            "--runtime-env-json", runtime_env,
            "--", "entai", "train", "--config", "train.yaml",
        ]  # fmt: skip
        deadline = time.monotonic() + 120
        while True:  # the head's job agent may still be starting just after `entai up`
            job = _run(submit, home, timeout=600)
            if "No available agent" not in job.stderr or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout
    finally:
        down = _run([entai, "down"], home, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr

    settings = EntaiSettings(home=home).resolved()
    uri = settings.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process default
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"], job.stdout[-4000:]
    run = client.get_run(versions[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["num_boost_round"] == "20"
    assert "valid_auc" in run.data.metrics
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"
