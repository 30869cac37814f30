"""``POST /v1/predict/{model}`` answered below FastAPI's routing and dependency solving.

Predict is the platform's hottest route, and in the cluster configuration one ingress
replica thread is its bottleneck. FastAPI's own work per request there (walking its
routers, solving the route's dependencies, among them the one through which Serve
hands the route its replica, then validating the answer against the response model
and encoding it a second time) was about a tenth of that thread's time
(``docs/benchmarks.md``). :class:`PredictRoute` is a Starlette route placed first in
the app's router. For a request it can take (``POST``, a JSON content type, a model
name FastAPI's route accepts) it reads the body, decodes it with :func:`json.loads` and
validates it with the same pydantic model as FastAPI's route
(:class:`~entai.deployments.schemas.PredictRequest`). It then awaits the replica's
predict (:func:`install_predict`) and writes the answer with pydantic's JSON
serializer, the bytes FastAPI's route writes.

Everything else does not match, and FastAPI's own ``/v1/predict/{model}`` route
answers: another content type, a model name over 200 characters, another method, a
replica not yet started. That route is also what the OpenAPI document describes.
Errors are raised as FastAPI's route raises them: ``RequestValidationError`` with the
same ``body``-prefixed locations and messages, FastAPI's ``json_invalid`` error for a
body that is not JSON, its 400 for one that is not UTF-8 or a client that went away
mid-body, and entai errors as they are. The app's exception handlers therefore answer
both routes alike, and the middlewares (request id, tracing, edge: authentication and
the body limit) run around both.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.exceptions import HTTPException, RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from entai.deployments.edge_middleware import route_path, scope_header
from entai.deployments.schemas import PredictRequest, PredictResponse

__all__ = ["MODEL_MAX_LENGTH", "PATH", "PredictHandler", "PredictRoute", "install_predict"]

PATH = "/v1/predict/{model}"
MODEL_MAX_LENGTH = 200
"""The longest model name FastAPI's route accepts (its ``Path(max_length=...)``)."""

PredictHandler = Callable[[PredictRequest, str, str | None], Awaitable[PredictResponse]]
"""The replica's predict: the request, the model name, the ``Authorization`` value."""

_PREFIX = PATH.removesuffix("{model}")
_STATE_KEY = "predict_handler"
_ANSWER = TypeAdapter(PredictResponse)
_JSON_HEADERS = [(b"content-type", b"application/json")]
_UNREADABLE = "There was an error parsing the body"  # FastAPI's words for a body it cannot read


def install_predict(app: Any, handler: PredictHandler) -> None:
    """Make ``handler`` what :class:`PredictRoute` answers with in ``app`` (a Starlette app)."""
    setattr(app.state, _STATE_KEY, handler)


def _handler(scope: Scope) -> PredictHandler | None:
    app = scope.get("app")
    return getattr(getattr(app, "state", None), _STATE_KEY, None)


def _json_content(scope: Scope) -> bool:
    """Whether the request's content type is one FastAPI's route decodes as JSON
    (``application/json`` or ``application/*+json``, parameters allowed)."""
    for key, value in scope["headers"]:
        if key == b"content-type":
            kind = bytes(value).split(b";", 1)[0].strip().lower()
            if not kind.startswith(b"application/"):
                return False
            subtype = kind[len(b"application/") :]
            return subtype == b"json" or subtype.endswith(b"+json")
    return False  # FastAPI's route (strict content type) does not decode it either


class PredictRoute(BaseRoute):
    """The predict route for requests it can take; see the module's docstring."""

    path = PATH
    path_format = PATH
    methods = frozenset({"POST"})  # read by Ray Serve's route patterns
    name = "predict_direct"
    include_in_schema = False

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FULL for a ``POST`` with a JSON body to a model name FastAPI's route accepts,
        in an app whose replica installed its handler; NONE otherwise."""
        if scope["type"] != "http" or scope.get("method") != "POST":
            return Match.NONE, {}
        path = route_path(scope)
        if not path.startswith(_PREFIX):
            return Match.NONE, {}
        model = path[len(_PREFIX) :]
        if not model or "/" in model or len(model) > MODEL_MAX_LENGTH:
            return Match.NONE, {}
        if _handler(scope) is None or not _json_content(scope):
            return Match.NONE, {}
        return Match.FULL, {"route": self, "path_params": {"model": model}}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        """This route is not named for URL building (FastAPI's route is)."""
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read and validate the body, predict, and write the answer."""
        handler = _handler(scope)
        assert handler is not None  # matches() checked it
        body = await _read_body(receive)
        if body is None:  # the client went away (or the edge refused the body)
            raise HTTPException(status_code=400, detail=_UNREADABLE)  # as FastAPI's route
        request = _validated(body)
        authorization = scope_header(scope, b"authorization")
        answer = await handler(request, scope["path_params"]["model"], authorization)
        content = _ANSWER.dump_json(answer, by_alias=True)
        headers = [(b"content-length", str(len(content)).encode()), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _validated(body: bytes) -> PredictRequest:
    """``body`` as a :class:`PredictRequest`, or FastAPI's validation error for it."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        decoded = json.loads(body)
    except json.JSONDecodeError as exc:  # before ValueError: it is one
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8, or nested too deep
        raise HTTPException(status_code=400, detail=_UNREADABLE) from exc
    try:
        return PredictRequest.model_validate(decoded, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=decoded) from exc
