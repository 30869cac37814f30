"""`entai up`'s choice of the dashboard agent port (no Ray started)."""

from __future__ import annotations

import socket

import pytest

from entai.actors.core import agent_port
from entai.shared.core import ConflictError


def test_a_taken_default_agent_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        chosen = agent_port(taken, explicit=False)
        assert chosen != taken
        with socket.socket() as probe:
            probe.bind(("", chosen))  # really free
        with pytest.raises(ConflictError, match=f"port {taken}"):
            agent_port(taken, explicit=True)
    assert agent_port(taken, explicit=True) == taken
