"""Joining or starting Ray, and creating entai's named, detached service actors."""

from __future__ import annotations

import logging
import os
from typing import Any

from entai.actors.core._local_head import SERVE_ENV, read_head
from entai.actors.core._placement import role_options
from entai.shared.settings import EntaiSettings

__all__ = ["connect_ray", "service_actor"]

log = logging.getLogger(__name__)


def connect_ray(settings: EntaiSettings, *, address: str | None = None) -> bool:
    """Join a Ray cluster, or start a local head when there is none to join.

    The cluster joined is the first of: ``address``, ``settings.ray.address``,
    ``RAY_ADDRESS`` (set by Ray for a driver started by ``ray job submit``), the head
    ``entai up`` recorded under ``settings.home``. Without any, a local head starts.

    Returns:
        True when this call started a local head (so the caller owns its shutdown).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    head = read_head(settings)
    target = (
        address
        or settings.ray.address
        or os.environ.get("RAY_ADDRESS")
        or (head.address if head is not None else None)
    )
    if target:
        # Ray turns token auth on by itself only for a cluster found by "auto"; joining
        # an explicit address does the same here, so a token in ~/.ray (or RAY_AUTH_TOKEN)
        # is always used. RAY_AUTH_MODE=disabled still opts out explicitly.
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        ray.init(address=target, namespace=settings.ray.namespace, log_to_driver=False)
        return False
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        address="local",
        num_cpus=settings.ray.num_cpus,
        namespace=settings.ray.namespace,
        include_dashboard=True,
        dashboard_host=settings.ray.dashboard_host,
        dashboard_port=settings.ray.dashboard_port,
        log_to_driver=False,
    )
    return True


def service_actor(actor_class: Any, name: str, namespace: str, *args: Any, **kwargs: Any) -> Any:
    """Get or create a named, detached, restartable actor that reserves no CPU.

    ``max_restarts=-1`` restarts it after a crash; ``max_task_retries=-1`` retries a
    call that was in flight when it died, so callers see the restarted actor's answer.
    """
    return actor_class.options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        get_if_exists=True,
        **role_options("service"),
    ).remote(*args, **kwargs)
