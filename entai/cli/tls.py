"""TLS commands: a Ray node's certificate from the cluster's CA (``RAY_USE_TLS=1``).

The KubeRay manifests run ``entai tls node-cert`` in each pod's init container, with
the pod's IP, before Ray starts (cluster/kuberay/raycluster.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entai.cli._app import app, console

__all__ = ["tls_app"]

tls_app = typer.Typer(help="TLS for Ray's own traffic (RAY_USE_TLS=1).", no_args_is_help=True)
app.add_typer(tls_app, name="tls")


@tls_app.command("node-cert")
def node_cert(
    ip: Annotated[
        list[str], typer.Option("--ip", help="An address peers reach this node at (repeatable).")
    ],
    ca_dir: Annotated[
        Path, typer.Option("--ca-dir", help="Directory with the CA's ca.crt and ca.key.")
    ] = Path("/etc/ray/ca"),
    out: Annotated[
        Path, typer.Option("--out", help="Where tls.crt, tls.key and ca.crt are written.")
    ] = Path("/etc/ray/tls"),
    name: Annotated[
        list[str] | None, typer.Option("--name", help="A DNS name of this node (repeatable).")
    ] = None,
    days: Annotated[int, typer.Option(help="Validity in days.", min=1)] = 365,
) -> Path:
    """Write this node's certificate and key, signed by the cluster's CA."""
    from entai.actors.core import write_node_certificate  # ray: not at CLI start-up

    written = write_node_certificate(ca_dir, out, ips=ip, names=name, days=days)
    console.print(f"wrote {written.cert} and {written.key} for {', '.join(ip)}")
    return written.cert
