"""Where entai's actors run: a Ray node label per role, with a fallback to any node.

Nodes of a scale-out cluster carry the label ``entai.io/role``: ``service`` (the head:
registry, governance, drift), ``shard`` (online store), ``serve`` (Serve replicas) and
``compute`` (Ray Data, Train, Tune); see ``cluster/kuberay/raycluster.yaml``. An actor
placed by :func:`role_options` asks for a node of its role first and, when none is
alive or feasible (an embedded single-node cluster, or the role's node just died),
falls back to any node, so a restarted shard comes back on a surviving node instead
of waiting for its role's node to return.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from entai.shared.core import InvalidInputError

__all__ = ["ROLE_LABEL", "Role", "role_options"]

ROLE_LABEL: Final = "entai.io/role"
"""The Ray node label (and Kubernetes group label) naming a node's role."""

Role = Literal["shard", "serve", "service", "compute"]

_ROLES: Final = frozenset(get_args(Role))


def role_options(role: Role, *, strict: bool = False) -> dict[str, Any]:
    """Ray actor options that place an actor on a node labelled with ``role``.

    Args:
        role: The node role to prefer (``shard``, ``serve``, ``service``, ``compute``).
        strict: Require the role's node (no fallback). The actor then waits, pending,
            while no such node is alive; use it only where the autoscaler adds one.

    Returns:
        Keyword arguments for ``ActorClass.options(...)``: a ``label_selector`` and,
        unless ``strict``, a ``fallback_strategy`` matching any node.

    Raises:
        InvalidInputError: ``role`` is not one of the known roles.
    """
    if role not in _ROLES:
        raise InvalidInputError(
            f"placement role {role!r} is not one of {sorted(_ROLES)}",
            details={"field": "role", "value": repr(role)},
        )
    options: dict[str, Any] = {"label_selector": {ROLE_LABEL: role}}
    if not strict:
        options["fallback_strategy"] = [{"label_selector": {}}]
    return options
