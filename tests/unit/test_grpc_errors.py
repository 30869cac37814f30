"""The gRPC error table agrees with the HTTP one, and a failed call ends cleanly."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from entai.deployments.grpc_errors import CODE_BY_ERROR, ERROR_CODE_KEY, code_for, end_with_error
from entai.deployments.http_errors import status_for
from entai.shared.core import _errors as errors

# The gRPC code each HTTP status of the entai error table stands for.
CODE_FOR_STATUS = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: {grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION},
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.INTERNAL,
}


def every_error_class() -> list[type[errors.EntaiError]]:
    found, todo = [], [errors.EntaiError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda c: c.__name__)


class Context:
    """What Serve's RayServegRPCContext offers a deployment method for ending a call."""

    def __init__(self) -> None:
        self.code: Any = None
        self.details = ""
        self.trailing: list[tuple[str, str]] = []

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.trailing = metadata


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_every_entai_error_gets_the_code_of_its_http_status(cls: type[errors.EntaiError]) -> None:
    exc = cls("x")
    expected = CODE_FOR_STATUS[status_for(exc)]
    assert code_for(exc) in (expected if isinstance(expected, set) else {expected})


def test_the_table_lists_specific_classes_before_their_bases() -> None:
    classes = [cls for cls, _ in CODE_BY_ERROR]
    for i, cls in enumerate(classes):
        for later in classes[i + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


@pytest.mark.parametrize(
    ("exc", "code", "entai_code"),
    [
        (errors.AuthenticationError("missing bearer token"), "UNAUTHENTICATED", "unauthenticated"),
        (errors.PermissionDeniedError("no predict"), "PERMISSION_DENIED", "permission_denied"),
        (errors.DefinitionError("bad view"), "INVALID_ARGUMENT", "invalid_definition"),
        (errors.NotFoundError("no model"), "NOT_FOUND", "not_found"),
        (errors.OverloadedError("busy"), "RESOURCE_EXHAUSTED", "overloaded"),
        (errors.ServiceUnavailableError("down"), "UNAVAILABLE", "service_unavailable"),
        (
            BackPressureError(num_queued_requests=9, max_queued_requests=8),
            "RESOURCE_EXHAUSTED",
            "overloaded",
        ),
        (DeploymentUnavailableError("Model"), "UNAVAILABLE", "service_unavailable"),
    ],
)
def test_a_failed_call_ends_with_its_code_message_and_entai_code(
    exc: Exception, code: str, entai_code: str
) -> None:
    context = Context()
    assert end_with_error(context, exc) == grpc.StatusCode[code]  # the access log's code
    assert context.code == grpc.StatusCode[code]
    assert context.details
    if isinstance(exc, errors.EntaiError):
        assert context.details == exc.message
    assert context.trailing == [(ERROR_CODE_KEY, entai_code)]


def test_an_unexpected_error_is_internal_and_its_text_stays_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = Context()
    end_with_error(context, KeyError("secret-looking internals"))
    assert context.code == grpc.StatusCode.INTERNAL
    assert "secret" not in context.details
    assert context.trailing == [(ERROR_CODE_KEY, "internal_error")]
    assert "grpc request failed" in caplog.text
