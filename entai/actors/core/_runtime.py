"""Joining or starting Ray, and creating entai's named, detached service actors."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from entai.actors.core._local_head import QUIET_RAY_ENV, local_serve_env, read_head
from entai.actors.core._placement import role_options
from entai.shared.core import ServiceUnavailableError
from entai.shared.settings import EntaiSettings

if TYPE_CHECKING:
    from ray.actor import ActorHandle

__all__ = ["connect_ray", "find_actor", "ray_target", "service_actor"]

log = logging.getLogger(__name__)


def ray_target(settings: EntaiSettings, address: str | None = None) -> str | None:
    """The Ray cluster to join: the first of ``address``, ``settings.ray.address``,
    ``RAY_ADDRESS`` (set by Ray for a driver started by ``ray job submit``) and the
    head ``entai up`` recorded under ``settings.home``; None when there is none.
    """
    head = read_head(settings)
    return (
        address
        or settings.ray.address
        or os.environ.get("RAY_ADDRESS")
        or (head.address if head is not None else None)
    )


def connect_ray(settings: EntaiSettings, *, address: str | None = None) -> bool:
    """Join a Ray cluster (see :func:`ray_target`), or start a temporary local one.

    The temporary cluster lives in this process (it stops when the process does) and
    has no dashboard, so it never competes for the ports of a platform's head.

    Returns:
        True when this call started a local head (so the caller owns its shutdown).

    Raises:
        ServiceUnavailableError: the cluster to join does not answer.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    target = ray_target(settings, address)
    if target:
        # Ray turns token auth on by itself only for a cluster found by "auto"; joining
        # an explicit address does the same here, so a token in ~/.ray (or RAY_AUTH_TOKEN)
        # is always used. RAY_AUTH_MODE=disabled still opts out explicitly.
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        try:
            ray.init(address=target, namespace=settings.ray.namespace, log_to_driver=False)
        except ConnectionError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ServiceUnavailableError(
                f"the Ray cluster at {target} does not answer ({reason}); `entai status` "
                "shows what runs, `entai down` then `entai up` starts it again",
                details={"address": target},
            ) from exc
        return False
    # Serve's mode (HAProxy fenced to loopback, see local_serve_env) is set, not
    # defaulted: a half-set HAProxy environment would listen on every interface.
    os.environ.update(local_serve_env(settings))
    for key, value in QUIET_RAY_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(
        address="local",
        num_cpus=settings.ray.num_cpus,
        namespace=settings.ray.namespace,
        include_dashboard=False,
        log_to_driver=False,
    )
    return True


def find_actor(name: str, namespace: str) -> ActorHandle[Any] | None:
    """The named actor of ``namespace``, or None when it does not run (or Ray is not
    connected). The one place entai looks an actor up by name: the services wiring
    (``entai.actors.services``) and the data-plane actors' caller check go through it."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        handle: ActorHandle[Any] = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None
    return handle


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
