"""A Ray node's TLS certificate, signed by the cluster's CA (``RAY_USE_TLS=1``).

With Ray's TLS on, every Ray process presents ``RAY_TLS_SERVER_CERT`` and checks its
peers against ``RAY_TLS_CA_CERT``. Peers reach a node by its IP address, which a
Kubernetes pod learns only when it starts, so one certificate cannot serve every pod:
each pod's init container (``entai tls node-cert``, cluster/kuberay) makes its own,
for its IP, from the CA in the ``entai-ray-tls`` Secret. The node's key never leaves
the pod's memory-backed volume.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from entai.shared.core import ConfigError, InvalidInputError

__all__ = ["NodeCertificate", "write_node_certificate"]

_LOCAL_IPS = ("127.0.0.1",)
_LOCAL_NAMES = ("localhost",)


@dataclass(frozen=True)
class NodeCertificate:
    """Where a node's TLS files were written (the values of Ray's three TLS variables)."""

    cert: Path
    key: Path
    ca_cert: Path


def _read_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / "ca.crt", ca_dir / "ca.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the Ray CA in {ca_dir} (ca.crt, ca.key) cannot be read: {exc}",
            details={"ca_dir": str(ca_dir)},
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            "the Ray CA key must be an EC key (openssl ecparam -genkey -name prime256v1)",
            details={"ca_dir": str(ca_dir)},
        )
    return cert, key


def write_node_certificate(
    ca_dir: Path,
    out_dir: Path,
    *,
    ips: list[str],
    names: list[str] | None = None,
    days: int = 365,
    now: datetime | None = None,
) -> NodeCertificate:
    """Write ``tls.crt``, ``tls.key`` (mode 0600) and ``ca.crt`` for one node into ``out_dir``.

    The certificate names ``ips`` and ``names`` (plus 127.0.0.1 and localhost, which
    Ray's processes on the node itself dial) and serves as server and client.

    Raises:
        InvalidInputError: an IP address that does not parse, or ``days`` < 1.
        ConfigError: the CA (``ca.crt``, ``ca.key`` in ``ca_dir``) cannot be read.
    """
    if days < 1:
        raise InvalidInputError("days must be at least 1", details={"field": "days"})
    try:
        addresses = [ipaddress.ip_address(ip) for ip in dict.fromkeys([*ips, *_LOCAL_IPS])]
    except ValueError as exc:
        raise InvalidInputError(str(exc), details={"field": "ip"}) from None
    ca_cert, ca_key = _read_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)  # clock skew between pods
    dns = list(dict.fromkeys([*(names or []), *_LOCAL_NAMES]))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(addresses[0]))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(a) for a in addresses] + [x509.DNSName(n) for n in dns]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = NodeCertificate(out_dir / "tls.crt", out_dir / "tls.key", out_dir / "ca.crt")
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths
