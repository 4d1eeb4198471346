"""The HTTP/JSON API under /api/v1: the gRPC client and operator API for clients without gRPC.

Every route (`api_routes.API_ROUTES`) runs one RPC through the gateway, as the caller its
credential names, so validation, errors, scopes and the audit trail are the gRPC API's own.
A request goes: who is asking (`Access.api_caller`: a bearer token, or the dashboard's
session cookie with its CSRF token) → the body, read with a size cap → the request message
(`api_json.build_request`) → the RPC → its response as JSON (`api_json.to_json`).

Errors are `{"error": {"code": "NOT_FOUND", "message": "..."}}` with the gRPC status code's
name and the HTTP status `gateway.HTTP_STATUS` maps it to; refusals before any RPC use the
same shape (401, 403, 413 a body over grpc.max_message_bytes, 415 a body that is not JSON).
Every response carries `X-Correlation-Id` (the request's, when it sent a valid one), which the
server's log lines of the call carry too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from jobq.observability.correlation import is_valid_correlation_id, new_correlation_id
from jobq.observability.logging_setup import get_logger
from jobq.server.web.access import ApiRefusal
from jobq.server.web.api_json import ApiInputError, build_request, to_json
from jobq.server.web.api_routes import API_PREFIX, API_ROUTES, ApiRoute, Body
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.openapi import openapi_document

__all__ = ["OPENAPI_PATH", "routes"]

log = get_logger("jobq.dashboard")

OPENAPI_PATH = API_PREFIX + "/openapi.json"
CORRELATION_HEADER = "x-correlation-id"

Endpoint = Callable[[Request], Awaitable[Response]]


def routes(ctx: WebContext) -> list[BaseRoute]:
    document = openapi_document(ctx.version)

    async def openapi(request: Request) -> Response:
        # The document describes the API and holds no data: readable without a credential, so
        # a client generator or a browser can fetch it before it has a token.
        return JSONResponse(document)

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
        *(
            Route(route.full_path, _endpoint(ctx, route), methods=[route.http_method])
            for route in API_ROUTES
        ),
    ]


def _endpoint(ctx: WebContext, route: ApiRoute) -> Endpoint:
    request_class = ctx.gateway.request_class(route.rpc)

    async def endpoint(request: Request) -> Response:
        correlation_id = _correlation_id(request)
        headers = {CORRELATION_HEADER: correlation_id}
        try:
            caller = ctx.access.api_caller(request)
            body = await _json_body(request, route.body, ctx.max_body_bytes)
            message = build_request(
                request_class,
                body,
                {field: request.path_params[param] for param, field in route.path_fields.items()},
                list(request.query_params.multi_items()),
                route.query_fields,
            )
        except ApiRefusal as exc:  # the credential (401, 403) or the body (413, 415, 400)
            if exc.http_status == 401:
                log.warning(
                    "api request refused",
                    action="api.unauthenticated",
                    path=request.url.path,
                    reason=exc.message,
                )
            return _error(exc.http_status, exc.code, exc.message, headers)
        except ApiInputError as exc:
            return _error(400, "INVALID_ARGUMENT", str(exc), headers)
        except RecursionError:  # [[[[... within the size limit: json's parser gives up
            return _error(400, "INVALID_ARGUMENT", "the body is nested too deeply", headers)
        try:
            response = await ctx.gateway.call(
                route.rpc, message, caller, correlation_id=correlation_id
            )
        except GatewayError as exc:
            return _error(exc.http_status, exc.code.name, exc.message, headers)
        return JSONResponse(to_json(response), headers=headers)

    endpoint.__name__ = route.operation_id
    return endpoint


def _correlation_id(request: Request) -> str:
    sent = request.headers.get(CORRELATION_HEADER)
    return sent if sent is not None and is_valid_correlation_id(sent) else new_correlation_id()


def _error(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _json_body(request: Request, body: Body, limit: int) -> object:
    """The request's JSON body (None when it sent none), read with at most `limit` bytes in
    memory whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            _refuse(400, "INVALID_ARGUMENT", "malformed Content-Length")
        if int(declared) > limit:
            _too_large(limit)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            _too_large(limit)
    if not raw:
        if body is Body.REQUIRED:
            _refuse(400, "INVALID_ARGUMENT", "this route needs a JSON object as its body")
        return None
    if body is Body.NONE:
        _refuse(400, "INVALID_ARGUMENT", f"{request.method} {request.url.path} takes no body")
    _check_content_type(request.headers.get("content-type"))
    try:
        return json.loads(
            bytes(raw).decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError:
        _refuse(400, "INVALID_ARGUMENT", "the body is not UTF-8")
    except ValueError as exc:
        _refuse(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {exc}")


def _check_content_type(value: str | None) -> None:
    media_type, _, params = (value or "").partition(";")
    charset = ""
    for param in params.split(";"):
        key, _, val = param.strip().partition("=")
        if key.lower() == "charset":
            charset = val.strip().strip('"').lower()
    if media_type.strip().lower() != "application/json" or charset not in ("", "utf-8"):
        _refuse(
            415,
            "INVALID_ARGUMENT",
            f"send the body as JSON with 'Content-Type: application/json' "
            f"(got {value or 'no Content-Type'!r})",
        )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _too_large(limit: int) -> NoReturn:
    _refuse(413, "RESOURCE_EXHAUSTED", f"the body is larger than {limit} bytes")


def _refuse(status: int, code: str, message: str) -> NoReturn:
    raise ApiRefusal(status, code, message)
