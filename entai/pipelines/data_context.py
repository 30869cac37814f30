"""Ray Data settings for the length of one execution, restored afterwards.

Ingestion and materialization change a few ``DataContext`` settings for their own
executions only (the V1 Parquet reader, the reservation off for a one-operator plan):
:func:`data_settings` sets them and puts the caller's values back, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["V1_PARQUET_READER", "data_settings"]

V1_PARQUET_READER = {"use_datasource_v2": False}
"""Ray Data 2.60's V2 Parquet reader starts 32 footer-reading actors (a fresh worker
process each) on every execution of a read, sized for listing large remote directories;
entai reads a few named or dated files, and V1 reads them with plain tasks on the
workers the cluster already has (measured: 10-20 s waits per read on 2 CPUs gone)."""


@contextmanager
def data_settings(**settings: Any) -> Iterator[None]:
    """Set ``DataContext`` attributes (``execution_options.<name>`` for its options)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    targets = {
        name: context.execution_options if name == "preserve_order" else context
        for name in settings
    }
    saved = {name: getattr(targets[name], name) for name in settings}
    for name, value in settings.items():
        setattr(targets[name], name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(targets[name], name, value)
