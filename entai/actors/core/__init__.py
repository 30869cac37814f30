"""What every service actor shares: joining or starting Ray, the local head, placement,
the actor clock and the metrics facade.
"""

from __future__ import annotations

from entai.actors.core._actor_clock import (
    ActorClock,
    call_self,
)
from entai.actors.core._local_head import (
    SERVE_ENV,
    HeadInfo,
    agent_port,
    read_head,
    start_head,
    stop_head,
)
from entai.actors.core._metrics import (
    METRICS,
    Metrics,
    MetricSpec,
)
from entai.actors.core._placement import (
    ROLE_LABEL,
    Role,
    role_options,
)
from entai.actors.core._runtime import (
    connect_ray,
    service_actor,
)
from entai.actors.core._service import (
    ActorService,
    LocalService,
    Service,
)

__all__ = [
    "METRICS",
    "ROLE_LABEL",
    "SERVE_ENV",
    "ActorClock",
    "ActorService",
    "HeadInfo",
    "LocalService",
    "MetricSpec",
    "Metrics",
    "Role",
    "Service",
    "agent_port",
    "call_self",
    "connect_ray",
    "read_head",
    "role_options",
    "service_actor",
    "start_head",
    "stop_head",
]
