"""Regenerate the committed gRPC code from ``entai.proto`` (needs grpcio-tools)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["GENERATED", "PROTO", "ROOT", "generate"]

PROTO = Path(__file__).with_name("entai.proto")
# The root the .proto is compiled from: its descriptor is named by its path from here
# (entai/deployments/proto/entai.proto), so the generated classes live in, import from
# and pickle as the module ``entai.deployments.proto.entai_pb2``, as Serve needs.
ROOT = PROTO.parents[3]
GENERATED = ("entai_pb2.py", "entai_pb2.pyi", "entai_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compile ``entai.proto`` under ``out_dir`` (``ROOT`` regenerates in place).

    Returns:
        The files written, under ``out_dir/entai/deployments/proto``.

    Raises:
        RuntimeError: protoc rejected the ``.proto`` (its messages are on stderr).
    """
    from grpc_tools import protoc

    well_known = Path(protoc.__file__).with_name("_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PROTO),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO} with status {status}")
    target = out_dir / PROTO.parent.relative_to(ROOT)
    return [target / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(ROOT):
        sys.stdout.write(f"wrote {path}\n")
