"""`entai status`: each Serve deployment's running/target replicas, from a fake controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import entai.client
from entai.deployments.serve_status import DeploymentReplicas, read_serve_details, replica_counts


def _replica(replica_id: str, state: str) -> dict[str, Any]:
    return {
        "replica_id": replica_id,
        "state": state,
        "pid": None,
        "actor_name": f"SERVE_REPLICA::{replica_id}",
        "actor_id": None,
        "node_id": None,
        "node_ip": None,
        "start_time_s": 1.0,
    }


def _deployment(
    name: str, status: str, target: int, states: list[str], autoscaling: dict[str, Any] | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"name": name}
    if autoscaling is not None:
        config["autoscaling_config"] = autoscaling
    return {
        "name": name,
        "status": status,
        "status_trigger": "AUTOSCALING" if autoscaling else "CONFIG_UPDATE_COMPLETED",
        "message": "",
        "deployment_config": config,
        "target_num_replicas": target,
        "required_resources": {},
        "replicas": [_replica(f"{name}-{i}", s) for i, s in enumerate(states)],
    }


def _app(name: str, status: str, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "route_prefix": "/",
        "docs_path": None,
        "status": status,
        "message": "",
        "last_deployed_time_s": 1.0,
        "deployed_app_config": None,
        "source": "declarative",
        "external_scaler_enabled": False,
        "deployments": {d["name"]: d for d in deployments},
    }


def controller_answer() -> dict[str, Any]:
    """The controller's ``get_serve_instance_details`` JSON: an app scaling up, one fixed."""
    scaling = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 4}
    return {
        "proxies": {},
        "applications": {
            "entai": _app(
                "entai",
                "RUNNING",
                [
                    _deployment(
                        "Model", "UPSCALING", 3, ["RUNNING", "RUNNING", "STARTING"], scaling
                    ),
                    _deployment("Ingress", "HEALTHY", 1, ["RUNNING"], {"max_replicas": 2}),
                ],
            ),
            "batch": _app(
                "batch", "DEPLOYING", [_deployment("Scorer", "UPDATING", 2, ["STOPPING"], None)]
            ),
        },
    }


EXPECTED = [
    DeploymentReplicas("batch", "DEPLOYING", "Scorer", "UPDATING", 0, 2, None, None),
    DeploymentReplicas("entai", "RUNNING", "Ingress", "HEALTHY", 1, 1, 1, 2),
    DeploymentReplicas("entai", "RUNNING", "Model", "UPSCALING", 2, 3, 1, 4),
]


class FakeServeClient:
    def get_serve_details(self) -> dict[str, Any]:
        return controller_answer()


def test_replica_counts_give_running_and_target_per_deployment() -> None:
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails.model_validate(controller_answer())
    rows = replica_counts(details)
    assert rows == EXPECTED
    assert [r.autoscaling for r in rows] == ["fixed", "1-2", "1-4"]
    # the same replica states serve.status() reports, of which only RUNNING count
    status = details._get_status().applications["entai"].deployments["Model"]
    assert status.replica_states == {"RUNNING": 2, "STARTING": 1}


def test_read_serve_details_asks_the_serve_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.serve.context

    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda **kwargs: FakeServeClient())
    details = read_serve_details()
    assert details is not None and set(details.applications) == {"entai", "batch"}
    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda **kwargs: None)
    assert read_serve_details() is None


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform that is up, whose actors are missing; Serve faked at its controller."""
    import ray
    import ray.serve.context

    def missing(name: str, namespace: str | None = None) -> Any:
        raise ValueError(name)

    monkeypatch.setattr(entai.client, "_address", lambda settings: ("127.0.0.1:6390", "d"))
    monkeypatch.setattr(entai.client, "connect_ray", lambda settings, address: None)
    monkeypatch.setattr(ray, "get_actor", missing)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda **kwargs: FakeServeClient())


@pytest.mark.usefixtures("cluster")
def test_platform_status_reports_the_actors_and_the_serve_replicas(tmp_path: Path) -> None:
    from entai.shared.settings import load_settings

    result = entai.client.platform_status(load_settings(home=tmp_path).resolved())
    assert result["serve"] == EXPECTED
    assert {r["state"] for r in result["services"]} == {"NOT_STARTED"}
    assert all(r["kind"] == "actor" for r in result["services"])


@pytest.mark.usefixtures("cluster")
def test_platform_status_without_serve_or_when_serve_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.shared.settings import load_settings

    settings = load_settings(home=tmp_path).resolved()
    monkeypatch.setattr(entai.client, "read_serve_details", lambda: None)
    assert entai.client.platform_status(settings)["serve"] == []

    def broken() -> None:
        raise ConnectionError("controller gone")

    monkeypatch.setattr(entai.client, "read_serve_details", broken)
    result = entai.client.platform_status(settings)
    assert result["serve"] == [] and len(result["services"]) > 0


@pytest.mark.usefixtures("cluster")
def test_entai_status_prints_replicas_next_to_the_actors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entai.cli import app

    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("entai-governance" in line and "NOT_STARTED" in line for line in lines)
    model = next(line for line in lines if " Model " in line)
    assert "UPSCALING" in model and "2/3" in model and "1-4" in model
    scorer = next(line for line in lines if " Scorer " in line)
    assert "0/2" in scorer and "fixed" in scorer and "DEPLOYING" in scorer
