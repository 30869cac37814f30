"""`entai tls node-cert`: a node certificate from the cluster's CA that a TLS client
checking the CA and the node's IP accepts (what Ray does with RAY_USE_TLS=1)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cluster_ca import write_ca
from cryptography import x509
from typer.testing import CliRunner

from entai.actors.core import write_node_certificate
from entai.cli import app
from entai.shared.core import ConfigError, InvalidInputError


def _handshake(cert: Path, key: Path, ca: Path, host: str) -> str:
    """Serve TLS on 127.0.0.1 with the node's pair; connect checking ``ca`` and ``host``."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            answer = tls.recv(2).decode()
        thread.join(timeout=10)
    return answer


def test_the_command_writes_a_pair_a_verifying_client_accepts(tmp_path: Path) -> None:
    ca_dir = write_ca(tmp_path / "ca")
    out = tmp_path / "tls"
    result = CliRunner().invoke(
        app,
        ["tls", "node-cert", "--ip", "10.1.2.3", "--name", "head.entai.svc",
         "--ca-dir", str(ca_dir), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'tls.crt'}" in result.output
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["head.entai.svc", "localhost"]
    # a client that checks the CA and the address accepts it; a wrong address is refused
    assert _handshake(out / "tls.crt", out / "tls.key", out / "ca.crt", "127.0.0.1") == "ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(out / "tls.crt", out / "tls.key", out / "ca.crt", "10.9.9.9")


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ours = write_node_certificate(write_ca(tmp_path / "ca"), tmp_path / "tls", ips=["10.0.0.1"])
    other = write_ca(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ours.cert, ours.key, other / "ca.crt", "127.0.0.1")


def test_bad_inputs_fail_with_entai_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        write_node_certificate(tmp_path / "missing", tmp_path / "tls", ips=["10.0.0.1"])
    with pytest.raises(ConfigError, match="EC key"):
        write_node_certificate(
            write_ca(tmp_path / "rsa", rsa_key=True), tmp_path / "t", ips=["10.0.0.1"]
        )
    with pytest.raises(InvalidInputError):
        write_node_certificate(write_ca(tmp_path / "ca"), tmp_path / "tls", ips=["not-an-ip"])
