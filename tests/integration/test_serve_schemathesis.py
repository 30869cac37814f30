"""Property-based HTTP checks against the app's own OpenAPI schema (schemathesis).

Needs the ``schemathesis`` package (4.x). Every generated request, valid or not, must
get a response that is not a 5xx and that matches the documented response schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from test_serve_http import Platform, deploy_platform, teardown_platform


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    import ray

    from entai.actors.drift_monitor import start_drift_monitor

    deployed = deploy_platform(tmp_path_factory.mktemp("serve-st"), port=8123, canary_percent=20)
    settings = deployed.settings
    monitor = start_drift_monitor(settings, settings.ray.namespace)
    ray.get(monitor.__ray_ready__.remote(), timeout=120)
    yield deployed
    ray.kill(monitor)
    teardown_platform(deployed)


def test_no_server_error_and_no_schema_violation(platform: Platform) -> None:
    """Every documented operation, fed generated valid and invalid bodies.

    Driven through schemathesis' Python API rather than its pytest plugin, whose
    test-node hooks do not match pytest 9.
    """
    schema = schemathesis.openapi.from_url(f"{platform.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8, "the OpenAPI schema lost operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                headers=platform.headers(platform.admin),
                checks=[not_a_server_error, response_schema_conformance],
            )

        check()
