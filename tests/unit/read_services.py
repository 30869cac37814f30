"""The read behind the feature and predict routes, in-process, for the encoding tests.

:func:`read_services` builds the :class:`PlatformServices` a Serve replica would hold,
over a memory online store holding the given rows and an authorization double.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from entai.actors.features import OnlineFeatureClient
from entai.deployments.platform import PlatformServices, ReadPlan
from entai.shared.features import Definitions, FeatureRow, FeatureService, MemoryOnlineStore


def read_services(
    rows: Sequence[FeatureRow], definitions: Definitions, service: FeatureService, auth: Any
) -> PlatformServices:
    """Services reading ``rows`` from memory for ``service``, authorized by ``auth``."""
    store = MemoryOnlineStore()
    store.write(list(rows))
    projections = tuple(definitions.resolve(service))
    return PlatformServices(
        auth=cast("Any", auth),
        features=OnlineFeatureClient(None, direct_store=store),
        credential="entai-svc.tests.not-used-by-reads",
        definitions=definitions,
        model_features=projections,
        model_plan=ReadPlan.of(projections),
        on_demand=tuple(definitions.on_demand(service)),
    )
