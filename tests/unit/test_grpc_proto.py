"""The committed gRPC code is what the pinned grpcio-tools makes from ``entai.proto``,
and the service it declares is the one the ingress answers and the configs register."""

from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path
from unittest.mock import Mock

import pytest
import yaml

from entai.deployments.grpc_ingress import SERVICER_FUNCTION, serve_options
from entai.deployments.proto.__main__ import GENERATED, PROTO, generate
from entai.shared.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[2]

GRPC_PORT = 9000  # the port the cluster's Serve configs give the gRPC proxy


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {path.name: path for path in generate(tmp_path_factory.mktemp("regenerated"))}


@pytest.mark.parametrize("name", GENERATED)
def test_committed_code_is_what_protoc_makes_from_the_proto(
    name: str, regenerated: dict[str, Path]
) -> None:
    assert regenerated[name].read_text() == (PROTO.parent / name).read_text(), (
        f"{name} is stale: run `.venv/bin/python -m entai.deployments.proto` and commit"
    )


def test_messages_pickle_by_their_package_path_as_serves_proxy_sends_them() -> None:
    from entai.deployments.proto import entai_pb2

    assert entai_pb2.DESCRIPTOR.name == "entai/deployments/proto/entai.proto"
    assert entai_pb2.DESCRIPTOR.package == "entai.v1"
    request = entai_pb2.PredictRequest(model="m")
    request.entities["user_id"].int64_values.values.extend([1, 2])
    assert type(request).__module__ == entai_pb2.__name__
    assert pickle.loads(pickle.dumps(request)) == request


def test_every_rpc_is_a_method_of_the_ingress_taking_serves_grpc_context() -> None:
    from entai.deployments.app import Ingress
    from entai.deployments.proto import entai_pb2

    service = entai_pb2.DESCRIPTOR.services_by_name["EntaiInference"]
    rpcs = {m.name for m in service.methods}
    assert rpcs == {"Predict", "Explain", "GetOnlineFeatures", "Recommend"}
    for rpc in rpcs:
        method = getattr(Ingress.func_or_class, rpc)
        assert inspect.iscoroutinefunction(method)
        assert "grpc_context" in inspect.signature(method).parameters


def test_the_servicer_function_imports_and_registers_the_service() -> None:
    module_name, _, attr = SERVICER_FUNCTION.rpartition(".")
    add = getattr(importlib.import_module(module_name), attr)

    class Server:
        def __init__(self) -> None:
            self.services: list[str] = []

        def add_generic_rpc_handlers(self, handlers: tuple[object, ...]) -> None:
            self.services += [h.service_name() for h in handlers]

        def add_registered_method_handlers(self, service: str, handlers: object) -> None:
            self.services.append(service)

    server = Server()
    add(Mock(), server)
    assert "entai.v1.EntaiInference" in server.services


@pytest.mark.parametrize("path", ["cluster/serve_config.yaml", "cluster/kuberay/rayservice.yaml"])
def test_the_serve_configs_register_the_servicer_with_reflection_off(path: str) -> None:
    from ray.serve.config import gRPCOptions

    config = yaml.safe_load((ROOT / path).read_text())
    if "spec" in config:
        config = yaml.safe_load(config["spec"]["serveConfigV2"])
    options = gRPCOptions.model_validate(config["grpc_options"])
    assert options.grpc_servicer_functions == [SERVICER_FUNCTION]
    assert options.port == GRPC_PORT
    assert options.enable_reflection is False


def test_serve_options_start_grpc_unless_its_port_is_off() -> None:
    on = serve_options(ServeSettings(port=8001, grpc_port=9001, wildcard_listeners=True))
    assert on["http_options"] == {"host": "127.0.0.1", "port": 8001}
    assert on["grpc_options"]["port"] == 9001
    assert on["grpc_options"]["grpc_servicer_functions"] == [SERVICER_FUNCTION]
    for off in (0, None):
        assert "grpc_options" not in serve_options(ServeSettings(grpc_port=off))
