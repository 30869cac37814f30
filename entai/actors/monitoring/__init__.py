"""The DriftMonitor service, its checkpoints and its alert sinks."""

from __future__ import annotations

from entai.actors.monitoring._alert_sinks import (
    AlertSink,
    Auditor,
    FanoutSink,
    GovernanceAuditor,
    LogSink,
    WebhookSink,
    configured_sink,
)
from entai.actors.monitoring._checkpoints import (
    RETRAIN_DIR,
    MonitorCheckpoints,
)
from entai.actors.monitoring._drift_monitor import (
    ACTOR_NAME,
    DriftMonitor,
    DriftMonitorActor,
    start_drift_monitor,
)

__all__ = [
    "ACTOR_NAME",
    "RETRAIN_DIR",
    "AlertSink",
    "Auditor",
    "DriftMonitor",
    "DriftMonitorActor",
    "FanoutSink",
    "GovernanceAuditor",
    "LogSink",
    "MonitorCheckpoints",
    "WebhookSink",
    "configured_sink",
    "start_drift_monitor",
]
