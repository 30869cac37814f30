"""`serve run cluster/serve_config.yaml` starts the application `entai deploy` starts.

Both end in the Serve controller with a ``ServeDeploySchema``:

- ``serve run <file>`` (``ray.serve.scripts.run``) validates the file, starts Serve with
  its ``proxy_location``, ``http_options`` and ``grpc_options`` and calls
  ``client.deploy_apps(config)``;
- ``entai deploy`` (``entai.client.deploy_serve_config``) validates the same file and
  PUTs ``config.model_dump(exclude_unset=True)`` to the dashboard, whose Serve head
  validates the JSON again, starts Serve with the same options and calls
  ``client.deploy_apps(config)``.

The controller then imports each ``import_path``, calls the builder with ``args``, builds
the graph and lays the config's per-deployment options over the code's
(``build_serve_application`` + ``override_deployment_info``). These tests capture what
`entai deploy` sends (the dashboard faked at its client), replay the controller's steps
in process on both configs and compare the deployments that come out: names, graph,
options. No cluster: ``ray.init`` raises in this tier.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "cluster" / "serve_config.yaml"
DASHBOARD = "http://127.0.0.1:8265"


class _SentError(Exception):
    """Stops `entai deploy` once its request to the dashboard is captured."""


def serve_run_config() -> ServeDeploySchema:
    """The schema ``serve run cluster/serve_config.yaml`` hands the controller."""
    return ServeDeploySchema.model_validate(yaml.safe_load(SERVE_CONFIG.read_text()))


def entai_deploy_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Run ``entai deploy`` (its default config file) up to its request to the dashboard.

    Returns the request's address and JSON body as the dashboard would receive them.
    """
    import entai.client

    sent: dict[str, Any] = {}

    class Dashboard:
        def __init__(self, address: str) -> None:
            sent["address"] = address

        def deploy_applications(self, config: dict[str, Any]) -> None:
            sent["body"] = json.loads(json.dumps(config))  # what goes over HTTP
            sent["joined_before"] = "joined" in sent
            raise _SentError

    def join(settings: Any, address: str | None = None) -> None:
        sent["joined"] = address  # joining turns on Ray's token auth for the request

    head = SimpleNamespace(address="127.0.0.1:6390", dashboard_url=DASHBOARD)
    monkeypatch.setattr(entai.client, "ServeSubmissionClient", Dashboard)
    monkeypatch.setattr(entai.client, "connect_ray", join)
    monkeypatch.setattr(entai.client, "read_head", lambda settings: head)
    monkeypatch.setenv("ENTAI_HOME", str(tmp_path))
    # The shipped config starts Serve's gRPC proxy, which listens on every interface:
    # `entai deploy` refuses it unless the settings accept that.
    monkeypatch.setenv("ENTAI_SERVE__WILDCARD_LISTENERS", "true")
    monkeypatch.chdir(ROOT)

    from entai.cli import app

    result = CliRunner().invoke(app, ["deploy"])
    assert isinstance(result.exception, _SentError), result.output
    return sent


def entai_deploy_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServeDeploySchema:
    """The schema the dashboard's Serve head builds from `entai deploy`'s request."""
    body = entai_deploy_request(monkeypatch, tmp_path)["body"]
    return ServeDeploySchema.model_validate(body)


def controller_build(app_config: ServeApplicationSchema) -> dict[str, Any]:
    """The controller's deployments for one application, built in this process.

    The steps of ``ray.serve._private.application_state``: import and call the builder,
    build the graph, turn each deployment into a ``DeploymentInfo`` and apply the
    config's overrides.
    """
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.application_state import override_deployment_info
    from ray.serve._private.build_app import build_app
    from ray.serve._private.deploy_utils import deploy_args_to_deployment_info

    target = import_attr(app_config.import_path)
    app = call_user_app_builder_with_args_if_necessary(target, app_config.args)
    built = build_app(app, name=app_config.name)
    infos = {
        d.name: deploy_args_to_deployment_info(
            deployment_name=d.name,
            deployment_config_proto_bytes=d._deployment_config.to_proto_bytes(),
            replica_config_proto_bytes=d._replica_config.to_proto_bytes(),
            deployer_job_id="unit",
            app_name=app_config.name,
            ingress=d.name == built.ingress_deployment_name,
        )
        for d in built.deployments
    }
    return override_deployment_info(infos, app_config)


def describe_arg(value: Any) -> Any:
    """A comparable stand-in for a constructor argument: handles by their target."""
    from pydantic import BaseModel
    from ray.serve.handle import DeploymentHandle

    if isinstance(value, DeploymentHandle):
        return ("handle", value.app_name, value.deployment_name)
    if isinstance(value, BaseModel):
        return (type(value).__qualname__, value.model_dump())
    return value


def describe(infos: dict[str, Any]) -> dict[str, Any]:
    """Per deployment: ingress flag, options, actor options and constructor arguments."""
    return {
        name: {
            "ingress": info.ingress,
            "options": info.deployment_config.model_dump(exclude={"version"}),
            "ray_actor_options": info.replica_config.ray_actor_options,
            "init_args": [describe_arg(a) for a in info.replica_config.init_args],
            "init_kwargs": {k: describe_arg(v) for k, v in info.replica_config.init_kwargs},
        }
        for name, info in infos.items()
    }


def built_apps(config: ServeDeploySchema) -> dict[str, dict[str, Any]]:
    return {a.name: describe(controller_build(a)) for a in config.applications}


def test_entai_deploy_sends_the_config_file_to_the_heads_dashboard(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    request = entai_deploy_request(monkeypatch, tmp_path)
    assert request["address"] == DASHBOARD
    # it joined the head first: the request then carries the cluster's token
    assert request["joined"] == "127.0.0.1:6390" and request["joined_before"] is True
    received = ServeDeploySchema.model_validate(request["body"])
    assert received.model_dump(exclude_unset=True) == serve_run_config().model_dump(
        exclude_unset=True
    )


def test_both_paths_start_serve_with_the_same_proxies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run, deploy = serve_run_config(), entai_deploy_config(monkeypatch, tmp_path)
    assert deploy.proxy_location == run.proxy_location
    assert deploy.http_options.model_dump() == run.http_options.model_dump()
    assert deploy.grpc_options.model_dump() == run.grpc_options.model_dump()
    assert run.http_options.host == "127.0.0.1"
    assert run.grpc_options.port == 9000
    assert run.grpc_options.grpc_servicer_functions == [
        "entai.deployments.proto.entai_pb2_grpc.add_EntaiInferenceServicer_to_server"
    ]


def test_the_import_path_is_the_builder_entai_uses() -> None:
    from ray._common.utils import import_attr

    from entai.deployments.app import AppArgs, build_app

    (app_config,) = serve_run_config().applications
    assert import_attr(app_config.import_path) is build_app
    args = AppArgs.model_validate(app_config.args)
    assert args.settings is None  # the replicas read ENTAI_* where they run
    assert args.model_replicas is None and args.ingress_replicas is None  # autoscaled


def test_serve_run_and_entai_deploy_build_the_same_deployments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = built_apps(serve_run_config())
    deploy = built_apps(entai_deploy_config(monkeypatch, tmp_path))
    assert run == deploy
    assert set(run) == {"entai"}
    assert set(run["entai"]) == {"Ingress"}


def test_the_graph_is_the_scoring_ingress_with_the_configs_args() -> None:
    from entai.deployments.app import AppArgs

    (app_config,) = serve_run_config().applications
    deployments = describe(controller_build(app_config))
    args = AppArgs.model_validate(app_config.args)
    assert args.score_in_ingress  # one deployment: no handle hop to a Model replica
    assert set(deployments) == {"Ingress"} and deployments["Ingress"]["ingress"]
    assert deployments["Ingress"]["init_args"] == [None, describe_arg(args)]


def test_the_model_deployment_comes_back_when_the_config_turns_scoring_off() -> None:
    raw = yaml.safe_load(SERVE_CONFIG.read_text())
    raw["applications"][0]["args"]["score_in_ingress"] = False
    (app_config,) = ServeDeploySchema.model_validate(raw).applications
    deployments = describe(controller_build(app_config))
    assert deployments["Ingress"]["init_args"][0] == ("handle", app_config.name, "Model")
    assert not deployments["Model"]["ingress"]


def test_every_option_of_the_config_reaches_its_deployment() -> None:
    raw = yaml.safe_load(SERVE_CONFIG.read_text())["applications"][0]
    deployments = describe(controller_build(serve_run_config().applications[0]))
    assert {d["name"] for d in raw["deployments"]} == set(deployments)
    for configured in raw["deployments"]:
        built = deployments[configured["name"]]
        for option, value in configured.items():
            if option == "name":
                continue
            if option == "ray_actor_options":
                assert built["ray_actor_options"] == value, configured["name"]
            elif option == "autoscaling_config":
                scaling = built["options"]["autoscaling_config"]
                assert {k: scaling[k] for k in value} == value, configured["name"]
            else:
                assert built["options"][option] == value, (configured["name"], option)


def test_the_comparison_sees_a_changed_option() -> None:
    config = serve_run_config()
    raw = yaml.safe_load(SERVE_CONFIG.read_text())
    raw["applications"][0]["deployments"][0]["max_ongoing_requests"] += 1
    changed = ServeDeploySchema.model_validate(raw)
    assert built_apps(changed) != built_apps(config)
