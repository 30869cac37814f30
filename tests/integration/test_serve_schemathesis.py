"""Property-based HTTP checks against the app's own OpenAPI schema (schemathesis).

Needs the ``schemathesis`` package (4.x). Every generated request, valid or not, must
get a response that is not a 5xx and that matches the documented response schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from test_serve_http import Platform, deploy_platform, teardown_platform


@pytest.fixture(scope="module")
def platform(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    deployed = deploy_platform(tmp_path_factory.mktemp("serve-st"), port=8123, canary_percent=20)
    yield deployed
    teardown_platform(deployed)


@pytest.fixture(scope="module")
def api_schema(platform: Platform) -> Any:
    return schemathesis.openapi.from_url(f"{platform.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_server_error_and_no_schema_violation(case: Any, platform: Platform) -> None:
    case.call_and_validate(
        headers=platform.headers(platform.admin),
        checks=[not_a_server_error, response_schema_conformance],
    )
