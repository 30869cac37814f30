"""entai's gRPC interface: ``entai.proto`` and the Python code generated from it.

``entai_pb2.py``, ``entai_pb2.pyi`` and ``entai_pb2_grpc.py`` are generated, committed
and never edited by hand: Ray Serve's gRPC proxy imports
``entai_pb2_grpc.add_EntaiInferenceServicer_to_server`` on every node, so the code comes
with the installed package, with no build step and no protoc at run time. The pinned
``grpcio-tools`` (a dev dependency, see constraints.txt) makes them::

    .venv/bin/python -m entai.deployments.proto

and ``tests/unit/test_grpc_proto.py`` fails when the committed files differ from what
that command makes from the ``.proto``. A Python client may import these modules, or
compile its own from ``entai.proto`` like any other language.
"""
