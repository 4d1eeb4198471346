"""The JSON and YAML documents jq-ctl prints: each response message as plain data.

The rules, chosen so that scripts can rely on them:

- keys are the proto field names, in the order the .proto file declares them, and every field is
  present (a message's unset fields included), so the shape never depends on the values;
- timestamps are ISO 8601 in UTC with microseconds (`2024-05-01T12:00:00.000000Z`), or null
  when unset; durations are seconds (a number);
- enums are their names without the type prefix (`PENDING`, `ONLINE`, `HEALTHY`); the
  UNSPECIFIED value is null;
- bytes (payloads, results) are text when they are valid UTF-8, else `{"base64": "..."}`;
- maps are objects with sorted keys; proto3 `optional` fields that are unset are null.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from jobq.ctl.durations import iso_utc

Document = dict[str, Any]
FieldInfo = Any
"""A FieldDescriptor: the stubs type the upb and the pure-Python classes apart."""

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


def to_document(message: Message) -> Document:
    """`message` as plain, JSON- and YAML-serialisable data (see the module's rules)."""
    document: Document = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and _is_map(field):
            document[field.name] = {
                str(key): _single(field.message_type.fields_by_name["value"], value[key])
                for key in sorted(value)
            }
        elif field.is_repeated:
            document[field.name] = [_single(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            document[field.name] = None
        else:
            document[field.name] = _single(field, value)
    return document


def bytes_value(data: bytes) -> str | dict[str, str]:
    """Text when `data` is valid UTF-8, else `{"base64": ...}` so nothing is lost or mangled."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def timestamp_value(message: Message) -> str:
    """A google.protobuf.Timestamp as ISO 8601 UTC."""
    seconds: int = getattr(message, "seconds", 0)
    nanos: int = getattr(message, "nanos", 0)
    return iso_utc(datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000))


def duration_seconds(message: Message) -> float:
    """A google.protobuf.Duration in seconds."""
    seconds: int = getattr(message, "seconds", 0)
    nanos: int = getattr(message, "nanos", 0)
    return seconds + nanos / 1e9


def enum_name(enum: Any, number: int) -> str | None:
    """`PENDING` for JOB_STATUS_PENDING; None for the zero (UNSPECIFIED) value."""
    if number == 0:
        return None
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)  # a value newer than this jq-ctl: keep the number
    name: str = value.name
    return name.removeprefix(_enum_prefix(enum.name))


def _enum_prefix(type_name: str) -> str:
    """`JOB_STATUS_` for `JobStatus` (the proto style guide's value prefix)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type_name).upper() + "_"


def _is_map(field: FieldInfo) -> bool:
    return field.is_repeated and bool(field.message_type.GetOptions().map_entry)


def _single(field: FieldInfo, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes_value(value)
    if field.enum_type is not None:
        return enum_name(field.enum_type, value)
    if field.message_type is not None:
        if field.message_type.full_name == _TIMESTAMP:
            return timestamp_value(value)
        if field.message_type.full_name == _DURATION:
            return duration_seconds(value)
        return to_document(value)
    return value


def dump_json(document: Mapping[str, Any]) -> str:
    """Indented JSON, keys in the document's (fixed) order, non-ASCII kept as is."""
    return json.dumps(document, indent=2, ensure_ascii=False)


def dump_yaml(document: Mapping[str, Any]) -> str:
    """Block-style YAML, keys in the document's (fixed) order; `yaml.safe_load` reads it back."""
    return yaml.safe_dump(
        dict(document), sort_keys=False, allow_unicode=True, default_flow_style=False
    ).rstrip("\n")
