"""What every service actor shares: joining or starting Ray, the local head, placement,
the actor clock, the metrics facade and tracing.
"""

from __future__ import annotations

from entai.actors.core._actor_clock import (
    ActorClock,
    call_self,
)
from entai.actors.core._local_head import (
    HAPROXY_SERVE_ENV,
    QUIET_RAY_ENV,
    SERVE_ENV,
    HeadInfo,
    agent_port,
    free_port,
    group_alive,
    kill_group,
    kill_session,
    local_serve_env,
    port_open,
    read_head,
    release_socket_dir,
    session_processes,
    spawn_group,
    start_head,
    stop_head,
)
from entai.actors.core._metrics import (
    METRICS,
    Metrics,
    MetricSpec,
)
from entai.actors.core._mlflow_ui import (
    DEFAULT_UI_PORT,
    MlflowUi,
    launch_mlflow_ui,
    mlflow_ui_command,
    mlflow_ui_env,
    read_mlflow_ui,
    stop_mlflow_ui,
    wait_for_mlflow_ui,
)
from entai.actors.core._node_tls import (
    NodeCertificate,
    write_node_certificate,
)
from entai.actors.core._placement import (
    ROLE_LABEL,
    Role,
    role_options,
)
from entai.actors.core._runtime import (
    connect_ray,
    find_actor,
    ray_target,
    service_actor,
)
from entai.actors.core._service import (
    ActorService,
    LocalService,
    NamedActorService,
    Service,
)
from entai.actors.core._tracing import (
    TraceCarrier,
    configure_tracing,
    reset_tracing,
    span,
    trace_carrier,
    tracing_enabled,
)

__all__ = [
    "DEFAULT_UI_PORT",
    "HAPROXY_SERVE_ENV",
    "METRICS",
    "QUIET_RAY_ENV",
    "ROLE_LABEL",
    "SERVE_ENV",
    "ActorClock",
    "ActorService",
    "HeadInfo",
    "LocalService",
    "MetricSpec",
    "Metrics",
    "MlflowUi",
    "NamedActorService",
    "NodeCertificate",
    "Role",
    "Service",
    "TraceCarrier",
    "agent_port",
    "call_self",
    "configure_tracing",
    "connect_ray",
    "find_actor",
    "free_port",
    "group_alive",
    "kill_group",
    "kill_session",
    "launch_mlflow_ui",
    "local_serve_env",
    "mlflow_ui_command",
    "mlflow_ui_env",
    "port_open",
    "ray_target",
    "read_head",
    "read_mlflow_ui",
    "release_socket_dir",
    "reset_tracing",
    "role_options",
    "service_actor",
    "session_processes",
    "span",
    "spawn_group",
    "start_head",
    "stop_head",
    "stop_mlflow_ui",
    "trace_carrier",
    "tracing_enabled",
    "wait_for_mlflow_ui",
    "write_node_certificate",
]
