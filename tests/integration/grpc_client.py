"""The gRPC client of the Serve tests: stubs compiled from entai.proto, in its own process.

A team's service in another language compiles ``entai.proto`` and shares nothing with
the server; so does this client. :func:`compile_stubs` runs grpcio-tools into a
directory and :func:`call` runs this file as a script against those stubs, sending
requests and reading answers in proto JSON::

    python grpc_client.py STUB_DIR HOST:PORT < calls.json > answers.json

Each call is ``{"method", "request", "metadata": [[key, value], ...]}``; each answer
``{"code", "details", "response" (on OK), "trailing"}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ZERO_TIME = "1970-01-01T00:00:00Z"  # the zero Timestamp in proto JSON: HTTP's null


def compile_stubs(out: Path) -> Path:
    """``entai_pb2`` and ``entai_pb2_grpc`` compiled from the repository's entai.proto."""
    from grpc_tools import protoc

    import entai.deployments.proto as package

    proto = Path(package.__file__).with_name("entai.proto")
    well_known = Path(protoc.__file__).with_name("_proto")
    includes = [f"-I{proto.parent}", f"-I{well_known}"]
    outputs = [f"--python_out={out}", f"--grpc_python_out={out}"]
    assert protoc.main(["protoc", *includes, *outputs, str(proto)]) == 0
    return out


def wait_for_route(target: str, app_name: str, timeout_s: float = 60.0) -> None:
    """Until Serve's gRPC proxy at ``target`` lists the application."""
    import grpc
    from ray.serve.generated import serve_pb2, serve_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        serve_api = serve_pb2_grpc.RayServeAPIServiceStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = serve_api.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=10)
            if app_name in listed.application_names:
                return
            time.sleep(0.2)
    raise AssertionError(f"the gRPC proxy at {target} never listed {app_name}")


def call(stubs: Path, target: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers of a client process to ``calls``, in order."""
    done = subprocess.run(
        [sys.executable, __file__, str(stubs), target],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def columns(entities: dict[str, list[Any]]) -> dict[str, Any]:
    """HTTP ``entities`` as proto JSON ``EntityColumn``s."""
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
    return None if text is None or text == null else datetime.fromisoformat(text)


def main() -> None:
    """Run the calls read from stdin; write the answers to stdout."""
    stub_dir, target = sys.argv[1:3]
    sys.path.insert(0, stub_dir)
    import entai_pb2
    import entai_pb2_grpc
    import grpc
    from google.protobuf import json_format

    requests = {
        "Predict": entai_pb2.PredictRequest,
        "Explain": entai_pb2.PredictRequest,
        "GetOnlineFeatures": entai_pb2.GetOnlineFeaturesRequest,
        "Recommend": entai_pb2.RecommendRequest,
    }
    answers: list[dict[str, Any]] = []
    with grpc.insecure_channel(target) as channel:
        stub = entai_pb2_grpc.EntaiInferenceStub(channel)
        for one in json.load(sys.stdin):
            request = json_format.ParseDict(one["request"], requests[one["method"]]())
            metadata = [tuple(pair) for pair in one["metadata"]]
            try:
                response, rpc = getattr(stub, one["method"]).with_call(
                    request, metadata=metadata, timeout=60
                )
            except grpc.RpcError as exc:
                failed: Any = exc
                answers.append(
                    {
                        "code": failed.code().name,
                        "details": failed.details(),
                        "trailing": dict(failed.trailing_metadata() or ()),
                    }
                )
                continue
            answers.append(
                {
                    "code": "OK",
                    "details": "",
                    "response": json_format.MessageToDict(
                        response,
                        preserving_proto_field_name=True,
                        always_print_fields_with_no_presence=True,
                    ),
                    "trailing": dict(rpc.trailing_metadata() or ()),
                }
            )
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
