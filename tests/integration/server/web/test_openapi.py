"""The OpenAPI document of /api/v1: served without a credential, valid OpenAPI 3.1 (checked by
openapi-spec-validator), in step with the route table and the scope table, and true of the
server (a short schemathesis pass, valid and invalid input: no 5xx, every response as the
document says)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.auth import Tokens
from support.processes import free_port
from support.server_harness import running_server

from jobq import __version__
from jobq.rpc._gen import admin_service_pb2, job_service_pb2
from jobq.rpc.method_scopes import METHOD_SCOPES
from jobq.server.web.api_routes import API_ROUTES

FUZZ_EXAMPLES = 6


@pytest.fixture
async def served(db_dsn: str) -> AsyncIterator[tuple[str, Tokens]]:
    tokens = Tokens.new()
    overrides = {**tokens.settings(), "dashboard.port": free_port()}
    async with running_server(db_dsn, overrides) as (app, _):
        yield f"http://127.0.0.1:{app.dashboard_port}", tokens


async def _document(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get("/api/v1/openapi.json")  # no credential
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


async def test_the_document_is_valid_openapi_and_needs_no_credential(
    served: tuple[str, Tokens],
) -> None:
    document = await _document(served[0])
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == __version__
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "WorkerService" in document["info"]["description"]


async def test_every_route_is_documented_with_its_scope(served: tuple[str, Tokens]) -> None:
    document = await _document(served[0])
    for route in API_ROUTES:
        operation = document["paths"][route.full_path][route.http_method.lower()]
        scope = METHOD_SCOPES[route.rpc].value
        assert operation["x-jobq-scope"] == scope
        assert f"`{scope}` scope" in operation["description"]
        assert operation["x-jobq-rpc"] == route.rpc
        assert {"200", "400", "401", "403", "default"} <= set(operation["responses"])
        params = {(p["in"], p["name"]) for p in operation["parameters"]}
        assert params == {("path", p) for p in route.path_fields} | {
            ("query", q) for q in route.query_fields
        }
    job = document["components"]["schemas"]["Job"]
    assert job["properties"]["created_at"] == {"type": "string", "format": "date-time"}
    assert job["properties"]["status"]["enum"][1] == "JOB_STATUS_PENDING"
    assert "status" in job["required"]
    assert "progress" not in job["required"]  # proto3 optional: left out when unset
    stats = document["components"]["schemas"]["QueueStats"]
    assert stats["properties"]["pending"]["type"] == "string"  # int64
    system = document["components"]["schemas"]["GetSystemStatusResponse"]
    assert system["properties"]["jobs_by_status"]["type"] == "object"


def test_every_client_and_operator_rpc_has_a_route() -> None:
    """A new unary RPC of JobService or AdminService fails here until it gets a route (the
    streaming ones and WorkerService stay gRPC-only, as the document says)."""
    unary = {
        f"/{service.full_name}/{method.name}"
        for module, name in ((job_service_pb2, "JobService"), (admin_service_pb2, "AdminService"))
        for service in [module.DESCRIPTOR.services_by_name[name]]
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    }
    assert {route.rpc for route in API_ROUTES} == unary
    assert len({route.operation_id for route in API_ROUTES}) == len(API_ROUTES)
    assert len({(r.http_method, r.path) for r in API_ROUTES}) == len(API_ROUTES)


async def test_a_short_fuzz_finds_no_server_error_and_no_response_off_the_document(
    served: tuple[str, Tokens],
) -> None:
    base, tokens = served
    document = await _document(base)
    # schemathesis calls with `requests` (blocking): from a thread, so the server, on this
    # test's event loop, keeps serving.
    failures, called = await asyncio.to_thread(_fuzz, document, base, tokens.everything)
    assert failures == []
    assert called == {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }


def _fuzz(document: dict[str, Any], base: str, token: str) -> tuple[list[str], set[str]]:
    """Failures, and the operations called at least once."""
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {token}"}
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []
    called: set[str] = set()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):
        spec = document["paths"][operation.path][operation.method.lower()]
        negative = mode is schemathesis.GenerationMode.NEGATIVE
        if negative and not (spec.get("parameters") or "requestBody" in spec):
            continue  # nothing to get wrong

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers=headers, checks=checks)
            called.add(case.operation.label)

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures, called
