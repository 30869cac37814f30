"""Replica counts of the running Serve applications (what ``entai status`` shows).

``ray.serve.status()`` is made from the controller's ``ServeInstanceDetails``: it keeps
each deployment's status and its replicas by state but drops the target count (what the
autoscaler, or ``num_replicas``, currently asks for). :func:`read_serve_details` reads
the same controller answer, and :func:`replica_counts` turns it into one row per
deployment: status, running replicas, target replicas and the autoscaling bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray.serve.config import AutoscalingConfig
from ray.serve.schema import DeploymentDetails, ServeInstanceDetails

__all__ = ["DeploymentReplicas", "read_serve_details", "replica_counts"]

_RUNNING = "RUNNING"  # ray.serve's ReplicaState.RUNNING


@dataclass(frozen=True)
class DeploymentReplicas:
    """One Serve deployment's replicas.

    Attributes:
        application: Serve application name.
        application_status: The application's status (``RUNNING``, ``DEPLOYING``...).
        deployment: Deployment name.
        status: The deployment's status (``HEALTHY``, ``UPSCALING``...).
        running: Replicas in state ``RUNNING``.
        target: Replicas the controller is driving towards.
        min_replicas: Autoscaling lower bound; None for a fixed replica count.
        max_replicas: Autoscaling upper bound; None for a fixed replica count.
    """

    application: str
    application_status: str
    deployment: str
    status: str
    running: int
    target: int
    min_replicas: int | None
    max_replicas: int | None

    @property
    def autoscaling(self) -> str:
        """``"min-max"`` of an autoscaling deployment, ``"fixed"`` otherwise."""
        if self.min_replicas is None or self.max_replicas is None:
            return "fixed"
        return f"{self.min_replicas}-{self.max_replicas}"


def _bounds(deployment: DeploymentDetails) -> tuple[int | None, int | None]:
    config: Any = deployment.deployment_config.autoscaling_config
    if isinstance(config, AutoscalingConfig):
        return config.min_replicas, config.max_replicas
    if isinstance(config, dict):  # the controller's JSON; unset keys take Ray's defaults
        defaults = AutoscalingConfig()
        low = config.get("min_replicas", defaults.min_replicas)
        high = config.get("max_replicas", defaults.max_replicas)
        return int(low), int(high)
    return None, None  # not set: a fixed num_replicas


def replica_counts(details: ServeInstanceDetails) -> list[DeploymentReplicas]:
    """One row per deployment of every application, ordered by application and name."""
    rows = []
    for app_name, app in sorted(details.applications.items()):
        for name, deployment in sorted(app.deployments.items()):
            low, high = _bounds(deployment)
            rows.append(
                DeploymentReplicas(
                    application=app_name,
                    application_status=str(app.status.value),
                    deployment=name,
                    status=str(deployment.status.value),
                    running=sum(r.state.value == _RUNNING for r in deployment.replicas),
                    target=deployment.target_num_replicas,
                    min_replicas=low,
                    max_replicas=high,
                )
            )
    return rows


def read_serve_details() -> ServeInstanceDetails | None:
    """Serve's details on the connected cluster; None when Serve is not running there."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    return ServeInstanceDetails.model_validate(client.get_serve_details())
