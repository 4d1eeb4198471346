"""JSON in and out of /api/v1: request messages from path, query and body, responses as JSON.

The mapping is proto3's canonical JSON (https://protobuf.dev/programming-guides/json/), with
the proto field names (`queue_name`, not `queueName`), so a client can read the .proto files,
the OpenAPI document or gRPC's reflection and know the shape:

- responses print every field that has no presence, zeros and empty lists included, so a
  client never has to guess a default; fields with presence (messages such as timestamps,
  proto3 `optional` numbers) are left out when unset;
- 64-bit integers are JSON strings ("5"), as proto3 JSON has them; timestamps are RFC 3339
  strings, durations strings of seconds ("1.500s"), enums their full names
  ("JOB_STATUS_PENDING"), bytes base64;
- one convenience on input: a bytes field (a job's `payload`) may be given as a JSON object
  instead of base64, and is sent as that object's JSON text (UTF-8), which is what payloads
  are (`{"handler": ...}` or `{"command": [...]}`);
- query parameters are typed by the field they fill: enums by full or short name, any case
  (`status=dead_lettered`), booleans `true`/`false`, integers in decimal.

Unknown fields, in the body or as query parameters, are refused (400): a typo must not be
silently ignored.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["ApiInputError", "build_request", "enum_prefix", "to_json"]


_INTEGERS = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
    }
)


class ApiInputError(Exception):
    """A request that cannot become its RPC's message: 400 with this message."""


def to_json(message: Message) -> dict[str, Any]:
    """`message` as proto3 JSON with proto field names, fields without presence always shown."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def build_request(
    cls: type[Message],
    body: object,
    path_values: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    query_fields: Mapping[str, str],
) -> Message:
    """The request message: `body` (a JSON object or None) with the query parameters and then
    the path parameters filled in. Raises ApiInputError."""
    if body is None:
        data: dict[str, Any] = {}
    elif isinstance(body, dict):
        data = dict(body)
    else:
        raise ApiInputError("the request body must be a JSON object")
    descriptor: Any = cls.DESCRIPTOR
    _payloads_as_json(descriptor, data)
    seen: set[str] = set()
    for name, raw in query:
        target = query_fields.get(name)
        if target is None:
            allowed = ", ".join(sorted(query_fields)) or "none"
            raise ApiInputError(f"unknown query parameter {name!r} (this route takes: {allowed})")
        if name in seen:
            raise ApiInputError(f"query parameter {name!r} given more than once")
        seen.add(name)
        _fill(data, target, _query_value(descriptor.fields_by_name[target], name, raw), name)
    for field_name, value in path_values.items():
        _fill(data, field_name, value, f"path parameter {field_name!r}")
    message = cls()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ApiInputError(_first_line(str(exc))) from None
    _refuse_nul(message)
    return message


def enum_prefix(enum: EnumDescriptor) -> str:
    """`JOB_STATUS_` for `JobStatus` (the proto style guide's value prefix)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _fill(data: dict[str, Any], field_name: str, value: Any, source: str) -> None:
    if field_name in data and data[field_name] != value:
        raise ApiInputError(
            f"{field_name!r} in the body ({data[field_name]!r}) differs from the {source} "
            f"({value!r}); leave it out of the body"
        )
    data[field_name] = value


def _query_value(field: FieldDescriptor, name: str, raw: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ApiInputError(f"query parameter {name!r}: expected true or false, got {raw!r}")
    if field.enum_type is not None:
        enum = field.enum_type
        prefix = enum_prefix(enum)
        wanted = raw.upper()
        for candidate in (wanted, prefix + wanted):
            if candidate in enum.values_by_name:
                return candidate
        names = ", ".join(v.name.removeprefix(prefix) for v in enum.values if v.number != 0)
        raise ApiInputError(f"query parameter {name!r}: unknown value {raw!r} (one of: {names})")
    if field.cpp_type in _INTEGERS:
        if not re.fullmatch(r"-?[0-9]{1,20}", raw):
            raise ApiInputError(f"query parameter {name!r}: expected an integer, got {raw!r}")
        return int(raw)  # ParseDict checks the field's range
    return raw


def _payloads_as_json(descriptor: Descriptor, data: dict[str, Any]) -> None:
    """Bytes fields given as JSON objects become base64 of their JSON text, in place, in this
    message and the messages it holds (SubmitJobsRequest.jobs[].payload)."""
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            continue  # ParseDict names the unknown field
        if field.type == FieldDescriptor.TYPE_BYTES and isinstance(value, dict):
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            data[key] = base64.b64encode(text.encode("utf-8")).decode("ascii")
        elif field.message_type is not None and not _is_map(field):
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    _payloads_as_json(field.message_type, item)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _refuse_nul(message: Message, where: str = "") -> None:
    """No string field may hold a NUL character: PostgreSQL's text cannot store one, and some
    servicers pass filters to the database unchecked (a 500 instead of a 400)."""
    for field, value in message.ListFields():
        name = f"{where}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else [value]
            if any("\x00" in v for v in values):
                raise ApiInputError(f"{name}: contains a NUL character")
        elif field.message_type is not None and not _is_map(field):
            items = value if field.is_repeated else [value]
            for index, item in enumerate(items):
                _refuse_nul(item, f"{name}[{index}]." if field.is_repeated else f"{name}.")


def _first_line(message: str) -> str:
    # ParseDict's messages for unknown fields go on with every available field, one long line
    # after a newline; the first line says what is wrong.
    return message.strip().splitlines()[0] if message.strip() else "malformed request"
