"""entai: an enterprise AI platform on one Ray cluster.

Importing this package is cheap and has no side effects: no Ray, no MLflow, no
network. Heavy modules load when a function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entai.client import Client

__all__ = ["__version__", "connect"]

__version__ = "0.1.0"


def connect(address: str | None = None, *, token: str | None = None) -> Client:
    """Connect to a running entai platform and return its typed client.

    Args:
        address: Ray address to join; ``None`` uses ``entai up``'s head or the settings.
        token: API token; ``None`` uses ``$ENTAI_TOKEN`` or the embedded admin token.
    """
    from entai.client import connect as _connect

    return _connect(address=address, token=token)
