"""The OpenAPI 3.1 document of /api/v1, built from the route table and the proto descriptors.

Nothing is written by hand twice: the paths and parameters come from `api_routes.API_ROUTES`,
the scopes from `rpc.method_scopes.METHOD_SCOPES`, and the request and response schemas from
the messages' descriptors, following the JSON mapping of `api_json` (proto3 JSON, proto field
names). Response schemas list every field without presence as required, since responses
always print them; input schemas refuse unknown properties, as the handlers do.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from jobq.rpc._gen import admin_service_pb2, job_service_pb2
from jobq.rpc.method_scopes import METHOD_SCOPES
from jobq.server.web.api_json import enum_prefix
from jobq.server.web.api_routes import API_ROUTES, ApiRoute, Body

__all__ = ["openapi_document"]

_LOADED = (admin_service_pb2, job_service_pb2)  # their descriptors fill the default pool

Schema = dict[str, Any]
Field = Any
"""A FieldDescriptor: the stubs type the upb and the pure-Python classes apart."""

_DESCRIPTION = """\
The HTTP/JSON face of jq-server's gRPC API (proto/job_service.proto and
proto/admin_service.proto): submit, follow, cancel and retry jobs; manage queues, workers and
schedules; read the system's status and the audit trail. Each operation calls one RPC in
process, with the same validation, errors, scopes and audit trail as a gRPC call.

**Auth**: `Authorization: Bearer <token>`, the tokens of `auth.tokens`; each operation needs
the one scope named in its `x-jobq-scope` (read, submit or admin). The dashboard's own session
cookie works too, with the session's CSRF token in `X-CSRF-Token` for anything but GET. With
no tokens configured (loopback only) no credential is needed. This document needs none.

**JSON**: proto3 JSON with the proto field names. Responses print every field without
presence (zeros, empty strings and lists included); unset timestamps and other messages are
left out. 64-bit integers are strings, timestamps RFC 3339, durations `"1.5s"`, enums their
full names (`JOB_STATUS_PENDING`), bytes base64. A job's `payload` may also be sent as a JSON
object. Unknown fields and query parameters are refused (400).

**Errors**: `{"error": {"code": "NOT_FOUND", "message": "..."}}`, with the gRPC status name
and its HTTP status: INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
NOT_FOUND 404, ALREADY_EXISTS/FAILED_PRECONDITION/ABORTED 409, RESOURCE_EXHAUSTED 429 (413 for
a body over the size limit), UNAVAILABLE 503, DEADLINE_EXCEEDED 504; 415 for a body that is
not `application/json`.

Not served over HTTP: the worker protocol (WorkerService: RegisterWorker, StreamJobs,
ReportResult ...), which only jq-worker speaks, over gRPC; and the streaming RPCs WatchJobs
and SubmitJobStream (poll `GET /api/v1/jobs/{job_id}`, submit with `POST /api/v1/jobs:batch`).
"""

_ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "The gRPC status code's name.",
                    "examples": ["NOT_FOUND", "INVALID_ARGUMENT"],
                },
                "message": {"type": "string"},
            },
        }
    },
}

_ERRORS = {
    "400": "Invalid input: malformed JSON, an unknown field or parameter, a value the server "
    "refuses (INVALID_ARGUMENT).",
    "401": "No credential, or one the server does not know (UNAUTHENTICATED).",
    "403": "The credential lacks the scope, or a session request lacks its CSRF token, or a "
    "cross-site request (PERMISSION_DENIED).",
    "404": "The job, queue, worker or schedule does not exist (NOT_FOUND).",
    "409": "Not possible in the current state, or the name is taken (FAILED_PRECONDITION, "
    "ALREADY_EXISTS).",
    "413": "The body is larger than grpc.max_message_bytes.",
    "415": "The body is not application/json.",
}

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document, for a server of this `version`."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in API_ROUTES:
        paths.setdefault(route.full_path, {})[route.http_method.lower()] = _operation(
            route, schemas
        )
    paths["/api/v1/openapi.json"] = {
        "get": {
            "operationId": "GetOpenApiDocument",
            "summary": "This document",
            "tags": ["system"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document of /api/v1.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobq HTTP API", "version": version, "description": _DESCRIPTION},
        "tags": [
            {"name": "jobs", "description": "Submit, follow, cancel and retry jobs."},
            {"name": "queues", "description": "Create, delete, pause and limit queues."},
            {"name": "workers", "description": "See, drain and stop workers."},
            {"name": "schedules", "description": "Cron and interval schedules."},
            {"name": "system", "description": "System status and the audit trail."},
        ],
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of auth.tokens (jq-ctl token create).",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "jq_session",
                    "description": "The dashboard's login cookie; anything but GET also needs "
                    "the session's CSRF token in the X-CSRF-Token header.",
                },
            },
            "schemas": {"Error": _ERROR_SCHEMA, **schemas.defined},
        },
    }


def _operation(route: ApiRoute, schemas: _Schemas) -> dict[str, Any]:
    method = descriptor_pool.Default().FindMethodByName(route.rpc.strip("/").replace("/", "."))
    request: Descriptor = method.input_type
    scope = METHOD_SCOPES[route.rpc].value
    parameters: list[dict[str, Any]] = [
        {
            "name": param,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
            "description": f"The request's `{field}`.",
        }
        for param, field in route.path_fields.items()
    ]
    parameters += [
        {
            "name": param,
            "in": "query",
            "required": False,
            "schema": _query_schema(request.fields_by_name[field]),
            "description": f"The request's `{field}`.",
        }
        for param, field in route.query_fields.items()
    ]
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "description": f"Calls the gRPC method `{route.rpc}`. Needs the `{scope}` scope.",
        "x-jobq-scope": scope,
        "x-jobq-rpc": route.rpc,
        "parameters": parameters,
    }
    if route.body is not Body.NONE:
        operation["requestBody"] = {
            "required": route.body is Body.REQUIRED,
            "content": {
                "application/json": {
                    "schema": schemas.body(request, frozenset(route.path_fields.values()))
                }
            },
        }
    responses: dict[str, Any] = {
        "200": {
            "description": f"The {method.output_type.name}.",
            "content": {"application/json": {"schema": schemas.ref(method.output_type, False)}},
        }
    }
    statuses = ["400", "401", "403", "404", "409"]
    if route.body is not Body.NONE:
        statuses += ["413", "415"]
    for status in statuses:
        responses[status] = _error_response(_ERRORS[status])
    responses["default"] = _error_response("Any other error, in the same shape.")
    operation["responses"] = responses
    return operation


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _query_schema(field: Field) -> Schema:
    if field.enum_type is not None:
        prefix = enum_prefix(field.enum_type)
        names = [v.name.removeprefix(prefix) for v in field.enum_type.values if v.number != 0]
        return {
            "type": "string",
            "enum": names,
            "description": "Also accepted: the full name, any case.",
        }
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type in _INT64:
        return {"type": "integer", "format": "int64"}
    if field.type in _INT32:
        return {"type": "integer", "format": "int32"}
    return {"type": "string"}


class _Schemas:
    """Component schemas, defined as they are first referred to. A message has an output
    schema (its name) and, when requests carry it, an input schema (its name, or name + Input
    when responses use the message too)."""

    def __init__(self) -> None:
        self.defined: dict[str, Schema] = {}

    def ref(self, message: Descriptor, inbound: bool) -> Schema:
        name = _schema_name(message, inbound)
        if name not in self.defined:
            self.defined[name] = {}  # placeholder first: messages can refer to themselves
            self.defined[name] = self._object(message, inbound, frozenset())
        return {"$ref": f"#/components/schemas/{name}"}

    def body(self, message: Descriptor, from_path: frozenset[str]) -> Schema:
        """The body schema of a request whose `from_path` fields come from the URL."""
        if not from_path:
            return self.ref(message, True)
        name = f"{message.name}Body"
        if name not in self.defined:
            self.defined[name] = self._object(message, True, from_path)
        return {"$ref": f"#/components/schemas/{name}"}

    def _object(self, message: Descriptor, inbound: bool, leave_out: frozenset[str]) -> Schema:
        properties = {
            field.name: self._field(field, inbound)
            for field in message.fields
            if field.name not in leave_out
        }
        schema: Schema = {"type": "object", "properties": properties}
        if inbound:
            schema["additionalProperties"] = False
        else:
            required = [
                field.name
                for field in message.fields
                if not field.has_presence and field.name not in leave_out
            ]
            if required:
                schema["required"] = required
        return schema

    def _field(self, field: Field, inbound: bool) -> Schema:
        if _is_map(field):
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value, inbound)}
        if field.is_repeated:
            return {"type": "array", "items": self._single(field, inbound)}
        return self._single(field, inbound)

    def _single(self, field: Field, inbound: bool) -> Schema:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            full_name = field.message_type.full_name
            if full_name == _TIMESTAMP:
                return {"type": "string", "format": "date-time"}
            if full_name == _DURATION:
                return {
                    "type": "string",
                    "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
                    "description": "Seconds with an `s` suffix, e.g. `1.5s`.",
                }
            return self.ref(field.message_type, inbound)
        if kind == FieldDescriptor.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if kind == FieldDescriptor.TYPE_BYTES:
            base64: Schema = {"type": "string", "contentEncoding": "base64"}
            if not inbound:
                return base64
            return {
                "oneOf": [
                    base64,
                    {"type": "object", "description": "Sent as this object's JSON text."},
                ]
            }
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind in _INT64:
            if inbound:
                return {"type": ["integer", "string"], "format": "int64"}
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "minimum": 0, "maximum": 4294967295}
        raise TypeError(f"no JSON schema for field {field.full_name} (type {kind})")


def _schema_name(message: Descriptor, inbound: bool) -> str:
    if inbound and not message.name.endswith("Request"):
        return f"{message.name}Input"
    return message.name


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)
