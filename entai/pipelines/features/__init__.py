"""Feature pipelines: materialization, the streaming path, skew checks and
point-in-time training sets.
"""

from __future__ import annotations

from entai.pipelines.features._materialize import (
    MaterializeReport,
    materialize,
    read_watermark,
)
from entai.pipelines.features._skew import (
    SkewReport,
    check_skew,
)
from entai.pipelines.features._stream import (
    BatchReport,
    StreamConsumer,
    StreamReport,
    publish_events,
    push,
)
from entai.pipelines.features._stream_worker import (
    STREAM_WORKER_PREFIX,
    DeadLetter,
    DeadLetters,
    StreamWorker,
    StreamWorkerActor,
    start_stream_workers,
    stream_worker_name,
    stream_worker_names,
    wait_for_backlog,
)
from entai.pipelines.features._training_set import (
    TrainingSet,
    get_historical_features,
)

__all__ = [
    "STREAM_WORKER_PREFIX",
    "BatchReport",
    "DeadLetter",
    "DeadLetters",
    "MaterializeReport",
    "SkewReport",
    "StreamConsumer",
    "StreamReport",
    "StreamWorker",
    "StreamWorkerActor",
    "TrainingSet",
    "check_skew",
    "get_historical_features",
    "materialize",
    "publish_events",
    "push",
    "read_watermark",
    "start_stream_workers",
    "stream_worker_name",
    "stream_worker_names",
    "wait_for_backlog",
]
