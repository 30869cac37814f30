"""The gRPC face of the ingress: service ``entai.v1.EntaiInference`` on Serve's gRPC proxy.

Serve's gRPC proxy sends a call of ``/entai.v1.EntaiInference/Predict`` (``Explain``,
``GetOnlineFeatures``, ``Recommend``) to the ingress deployment of the application named
by the ``application`` metadata (or of the only application running) and calls the
ingress method of the same name with the request message and a ``grpc_context``. A
FastAPI ingress answers such calls too, so the :class:`~entai.deployments.app.Ingress`
deployment takes the gRPC methods from :class:`GrpcInference` and no extra deployment
sits in the path: a gRPC call costs the hops of an HTTP one (proxy -> ingress, features
read in-process, -> Model). Each method translates around the HTTP route of the same
operation, so auth (the ``authorization`` metadata is the HTTP header), feature lookup,
canary, tap, impression log and answers are the same.
As over HTTP, a call is authenticated (the ``authorization`` metadata and the peer,
through the replica's :class:`~entai.deployments.edge_middleware.EdgePolicy`) before
its message is looked at, then the message's size is checked against
``serve.max_body_bytes`` (RESOURCE_EXHAUSTED over it). Ray 2.60's gRPC options have no
message-size setting (its proxy takes ``RAY_SERVE_GRPC_MAX_MESSAGE_SIZE`` from the
environment, 2 GiB by default), so the size is checked on receipt in the replica.
With tracing on, a call is a server span (``gRPC /entai.v1.EntaiInference/Predict``;
a ``traceparent`` metadata entry continues the caller's trace) over the same spans as
the HTTP route's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from entai.actors.core import span, tracing_enabled
from entai.deployments.access_log import log_failure
from entai.deployments.edge_middleware import EdgePolicy
from entai.deployments.grpc_errors import end_with_error
from entai.deployments.request_ids import _serve_request_id
from entai.deployments.schemas import (
    ExplainRequest,
    ExplainResponse,
    OnlineFeaturesRequest,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
)
from entai.shared.core import PayloadTooLargeError, ServiceUnavailableError, request_context
from entai.shared.settings import ServeSettings, check_listeners

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from ray.serve.grpc_util import RayServegRPCContext

    from entai.deployments.proto import entai_pb2 as pb

__all__ = ["SERVICER_FUNCTION", "GrpcInference", "peer_host", "serve_options"]

SERVICER_FUNCTION = "entai.deployments.proto.entai_pb2_grpc.add_EntaiInferenceServicer_to_server"
_Reply = TypeVar("_Reply", bound="Message")


class _Routes(Protocol):
    """The HTTP routes of the ingress that the gRPC methods call."""

    async def predict(
        self, body: PredictRequest, model: str, authorization: str | None
    ) -> PredictResponse: ...

    async def explain(
        self, body: ExplainRequest, model: str, authorization: str | None
    ) -> ExplainResponse: ...

    async def online_features(
        self, body: OnlineFeaturesRequest, authorization: str | None
    ) -> dict[str, Any]: ...

    async def recommend(
        self, body: RecommendRequest, model: str, authorization: str | None
    ) -> RecommendResponse: ...


class GrpcInference:
    """Mixin of the ingress deployment: the gRPC methods, named as in ``entai.proto``.

    The ingress sets ``_edge`` when its replica starts; until then calls are UNAVAILABLE.
    It sets ``_log_failures`` from ``serve.access_log`` (:mod:`entai.deployments.access_log`).
    """

    _edge: EdgePolicy | None = None
    _log_failures: bool = False  # as the HTTP failure log: off until the replica starts

    async def _admit(self, request: Message, context: RayServegRPCContext) -> None:
        """Authenticate the call, then bound its message, before anything reads it.

        Raises:
            AuthenticationError, RateLimitedError, ServiceUnavailableError: as over HTTP.
            PayloadTooLargeError: the message is over ``serve.max_body_bytes``.
        """
        edge = self._edge
        if edge is None:
            raise ServiceUnavailableError("the ingress replica is not ready")
        with span("entai.authenticate"):
            await edge.authenticator.authenticate(
                _authorization(context), peer_host(context.peer())
            )
        size = request.ByteSize()
        if size > edge.max_body_bytes:
            raise PayloadTooLargeError(
                f"request message is larger than {edge.max_body_bytes} bytes",
                details={"field": "message", "max_bytes": edge.max_body_bytes, "bytes": size},
            )

    async def _rpc(
        self,
        method: str,
        request: Message,
        context: RayServegRPCContext,
        empty: type[_Reply],
        translate: Callable[[_Routes, str | None], Awaitable[_Reply]],
    ) -> _Reply:
        """Run one rpc the same way as every other: Serve's request id bound, a server
        span (continuing a ``traceparent`` in the metadata), the call admitted
        (:meth:`_admit`), then ``translate`` given the HTTP routes and the
        ``authorization`` metadata; any failure ends as a gRPC status with entai's
        error code in the trailing metadata, and ``empty()`` is sent."""
        name = f"gRPC /entai.v1.EntaiInference/{method}"
        carrier = None
        if tracing_enabled():
            wanted = ("traceparent", "tracestate")
            carrier = {k: v for k, v in context.invocation_metadata() if k in wanted} or None
        started = time.perf_counter()
        with request_context(_serve_request_id()), span(name, parent=carrier, server=True):
            try:
                await self._admit(request, context)
                return await translate(cast("_Routes", self), _authorization(context))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, as in HTTP
                code = end_with_error(context, exc)
                if self._log_failures:
                    log_failure("gRPC", f"/entai.v1.EntaiInference/{method}", code.name, started)
                nothing: _Reply = empty()  # Serve sends it; the client sees only the status
                return nothing

    async def Predict(  # noqa: N802 - Serve calls the method named like the RPC
        self, request: pb.PredictRequest, grpc_context: RayServegRPCContext
    ) -> pb.PredictResponse:
        """``EntaiInference/Predict``: the HTTP predict route's answer as a message."""
        from entai.deployments import grpc_messages as messages
        from entai.deployments.proto import entai_pb2

        async def translate(routes: _Routes, authorization: str | None) -> pb.PredictResponse:
            model, body = messages.predict_request(request)
            return messages.predict_response(await routes.predict(body, model, authorization))

        reply = entai_pb2.PredictResponse
        return await self._rpc("Predict", request, grpc_context, reply, translate)

    async def Explain(  # noqa: N802 - Serve calls the method named like the RPC
        self, request: pb.PredictRequest, grpc_context: RayServegRPCContext
    ) -> pb.ExplainResponse:
        """``EntaiInference/Explain``: the HTTP explain route's answer as a message."""
        from entai.deployments import grpc_messages as messages
        from entai.deployments.proto import entai_pb2

        async def translate(routes: _Routes, authorization: str | None) -> pb.ExplainResponse:
            model, body = messages.explain_request(request)
            return messages.explain_response(await routes.explain(body, model, authorization))

        reply = entai_pb2.ExplainResponse
        return await self._rpc("Explain", request, grpc_context, reply, translate)

    async def GetOnlineFeatures(  # noqa: N802 - Serve calls the method named like the RPC
        self, request: pb.GetOnlineFeaturesRequest, grpc_context: RayServegRPCContext
    ) -> pb.GetOnlineFeaturesResponse:
        """``EntaiInference/GetOnlineFeatures``: the HTTP online-features route's answer."""
        from entai.deployments import grpc_messages as messages
        from entai.deployments.proto import entai_pb2

        async def translate(
            routes: _Routes, authorization: str | None
        ) -> pb.GetOnlineFeaturesResponse:
            body = messages.online_features_request(request)
            answer = await routes.online_features(body, authorization)
            return messages.online_features_response(answer)

        reply = entai_pb2.GetOnlineFeaturesResponse
        return await self._rpc("GetOnlineFeatures", request, grpc_context, reply, translate)

    async def Recommend(  # noqa: N802 - Serve calls the method named like the RPC
        self, request: pb.RecommendRequest, grpc_context: RayServegRPCContext
    ) -> pb.RecommendResponse:
        """``EntaiInference/Recommend``: the HTTP recommend route's answer as a message
        (same ranking, same impression log under the call's request id)."""
        from entai.deployments import grpc_messages as messages
        from entai.deployments.proto import entai_pb2

        async def translate(routes: _Routes, authorization: str | None) -> pb.RecommendResponse:
            model, body = messages.recommend_request(request)
            answer = await routes.recommend(body, model, authorization)
            return messages.recommend_response(answer)

        reply = entai_pb2.RecommendResponse
        return await self._rpc("Recommend", request, grpc_context, reply, translate)


def peer_host(peer: str | None) -> str | None:
    """The address part of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer


def _authorization(context: RayServegRPCContext) -> str | None:
    """The ``authorization`` metadata (gRPC keys are lower case): the HTTP header's value."""
    return next((v for k, v in context.invocation_metadata() if k == "authorization"), None)


def serve_options(settings: ServeSettings) -> dict[str, Any]:
    """``serve.start`` keyword arguments: the HTTP proxy, and the gRPC proxy unless off.

    Serve's gRPC proxy listens on every interface (``[::]``; Ray 2.60 has no host
    option for it), unlike HTTP's ``settings.host``, so it starts only when the settings
    accept that (``serve.wildcard_listeners``); the service needs a token all the same.
    Server reflection stays off: clients compile ``entai.proto``.

    Raises:
        ConfigError: gRPC (or HAProxy) would listen on every interface and
            ``serve.wildcard_listeners`` is off.
    """
    check_listeners(settings)
    options: dict[str, Any] = {"http_options": {"host": settings.host, "port": settings.port}}
    if settings.grpc_port:
        options["grpc_options"] = {
            "port": settings.grpc_port,
            "grpc_servicer_functions": [SERVICER_FUNCTION],
            "enable_reflection": False,
        }
    return options
