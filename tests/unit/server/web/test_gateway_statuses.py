"""gRPC status codes as HTTP statuses: the mapping /api/v1 and the pages answer with."""

from __future__ import annotations

import grpc

from jobq.server.web.gateway import HTTP_STATUS, GatewayError


def test_every_status_a_servicer_can_answer_has_an_http_status() -> None:
    assert GatewayError(grpc.StatusCode.NOT_FOUND, "x").http_status == 404
    assert GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "x").http_status == 400
    assert GatewayError(grpc.StatusCode.PERMISSION_DENIED, "x").http_status == 403
    assert GatewayError(grpc.StatusCode.UNAUTHENTICATED, "x").http_status == 401
    assert GatewayError(grpc.StatusCode.FAILED_PRECONDITION, "x").http_status == 409
    assert GatewayError(grpc.StatusCode.ALREADY_EXISTS, "x").http_status == 409
    assert GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "x").http_status == 429
    assert GatewayError(grpc.StatusCode.UNAVAILABLE, "x").http_status == 503
    assert GatewayError(grpc.StatusCode.INTERNAL, "x").http_status == 500
    assert GatewayError(grpc.StatusCode.UNKNOWN, "x").http_status == 500
    assert all(400 <= status < 600 for code, status in HTTP_STATUS.items() if code.value[0])
