"""Features: definitions and their versioned set, row shaping, the offline and online
store contracts, and the point-in-time join.
"""

from __future__ import annotations

from entai.shared.features._definition_set import (
    Definitions,
)
from entai.shared.features._definitions import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    OnDemandFeatureView,
    Transform,
    ValueType,
)
from entai.shared.features._offline_store import (
    OfflineStore,
    arrow_schema,
)
from entai.shared.features._online import (
    MISSING,
    FeatureRow,
    FeatureStatus,
    MemoryOnlineStore,
    OnlineBatch,
    OnlineStore,
    ReadRequest,
    ReadResult,
    assemble_result,
    entity_key,
    entity_keys,
    from_micros,
    list_value,
    micros,
    rendezvous_shard,
)
from entai.shared.features._pit_join import (
    entity_timestamps,
    hash_partition,
    output_name,
    point_in_time_join,
)
from entai.shared.features._rows import (
    compute_on_demand,
    compute_view,
    conform,
    latest_per_key,
    online_batch,
    online_rows,
    rows_file_id,
    stamp_created,
    to_utc,
)
from entai.shared.features._tombstones import (
    TombstoneMap,
    tombstone_id,
    tombstone_ids,
    tombstoned,
)
from entai.shared.features._values import (
    arrow_list_type,
    list_cells,
    list_column,
)
from entai.shared.features._windows import (
    trailing_window_sums,
    window_groups,
)

__all__ = [
    "CREATED_TIMESTAMP",
    "EVENT_TIMESTAMP",
    "MISSING",
    "Definitions",
    "Entity",
    "FeatureRow",
    "FeatureService",
    "FeatureStatus",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "MemoryOnlineStore",
    "OfflineStore",
    "OnDemandFeatureView",
    "OnlineBatch",
    "OnlineStore",
    "ReadRequest",
    "ReadResult",
    "TombstoneMap",
    "Transform",
    "ValueType",
    "arrow_list_type",
    "arrow_schema",
    "assemble_result",
    "compute_on_demand",
    "compute_view",
    "conform",
    "entity_key",
    "entity_keys",
    "entity_timestamps",
    "from_micros",
    "hash_partition",
    "latest_per_key",
    "list_cells",
    "list_column",
    "list_value",
    "micros",
    "online_batch",
    "online_rows",
    "output_name",
    "point_in_time_join",
    "rendezvous_shard",
    "rows_file_id",
    "stamp_created",
    "to_utc",
    "tombstone_id",
    "tombstone_ids",
    "tombstoned",
    "trailing_window_sums",
    "window_groups",
]
