"""A gRPC client from outside entai: stubs compiled from entai.proto, nothing else.

It runs in its own process, as a team's service would, so nothing of the server's
(its generated modules, its descriptor pool) is shared with it::

    python grpc_client.py STUB_DIR HOST:PORT < calls.json > answers.json

Each call is ``{"method", "request" (proto JSON), "metadata": [[key, value], ...]}``;
each answer ``{"code", "details", "response" (proto JSON, on OK), "trailing"}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> None:
    stub_dir, target = sys.argv[1:3]
    sys.path.insert(0, stub_dir)
    import entai_pb2
    import entai_pb2_grpc
    import grpc
    from google.protobuf import json_format

    requests = {
        "Predict": entai_pb2.PredictRequest,
        "GetOnlineFeatures": entai_pb2.GetOnlineFeaturesRequest,
    }
    answers: list[dict[str, Any]] = []
    with grpc.insecure_channel(target) as channel:
        stub = entai_pb2_grpc.EntaiInferenceStub(channel)
        for call in json.load(sys.stdin):
            request = json_format.ParseDict(call["request"], requests[call["method"]]())
            metadata = [tuple(pair) for pair in call["metadata"]]
            try:
                response, rpc = getattr(stub, call["method"]).with_call(
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
