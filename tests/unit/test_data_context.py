"""data_settings: Ray Data settings for one execution, the caller's put back."""

from __future__ import annotations

import pytest
import ray.data

from entai.pipelines.data_context import V1_PARQUET_READER, data_settings


def test_settings_hold_inside_and_are_restored_even_after_an_error() -> None:
    context = ray.data.DataContext.get_current()
    before = (
        context.use_datasource_v2,
        context.op_resource_reservation_enabled,
        context.execution_options.preserve_order,
    )
    with (
        pytest.raises(RuntimeError, match="boom"),
        data_settings(
            preserve_order=not before[2],
            op_resource_reservation_enabled=not before[1],
            **V1_PARQUET_READER,
        ),
    ):
        assert context.use_datasource_v2 is False
        assert context.op_resource_reservation_enabled is (not before[1])
        assert context.execution_options.preserve_order is (not before[2])
        raise RuntimeError("boom")
    after = (
        context.use_datasource_v2,
        context.op_resource_reservation_enabled,
        context.execution_options.preserve_order,
    )
    assert after == before
