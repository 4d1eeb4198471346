"""Payload parsing: well-formed payloads become specs, anything else one PayloadError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.errors import InvalidArgument
from jobq.domain.payload import (
    MAX_ARGV_ITEMS,
    UNSUPPORTED_PAYLOAD,
    CommandSpec,
    HandlerSpec,
    PayloadError,
    parse_payload,
)
from jobq.worker.execution_result import timed_out_message


def parse(document: Any) -> CommandSpec | HandlerSpec:
    return parse_payload(json.dumps(document).encode())


def test_a_full_command_payload_becomes_a_command_spec() -> None:
    spec = parse(
        {
            "command": ["printf", "%s", "$HOME; echo hi"],
            "env": {"GREETING": "hello"},
            "cwd": "/tmp",
            "timeout_s": 2.5,
            "stdin": "héllo",
        }
    )
    assert spec == CommandSpec(
        argv=("printf", "%s", "$HOME; echo hi"),
        env={"GREETING": "hello"},
        cwd="/tmp",
        timeout_s=2.5,
        stdin="héllo".encode(),
    )


def test_optional_command_fields_default_to_nothing() -> None:
    assert parse({"command": ["true"]}) == CommandSpec(argv=("true",))
    nulls = {"command": ["true"], "env": None, "cwd": None, "timeout_s": None, "stdin": None}
    assert parse(nulls) == CommandSpec(argv=("true",))


def test_an_integer_timeout_is_seconds() -> None:
    spec = parse({"command": ["true"], "timeout_s": 3})
    assert isinstance(spec, CommandSpec)
    assert spec.timeout_s == 3.0


def test_a_handler_payload_becomes_a_handler_spec() -> None:
    spec = parse({"handler": "pkg.mod:fn", "args": [1, "a"], "kwargs": {"x": [None]}})
    assert spec == HandlerSpec(handler="pkg.mod:fn", args=[1, "a"], kwargs={"x": [None]})
    assert parse({"handler": "send_email"}) == HandlerSpec(handler="send_email")
    timed = parse({"handler": "send_email", "timeout_s": 1})
    assert isinstance(timed, HandlerSpec)
    assert timed.timeout_s == 1.0


@pytest.mark.parametrize(
    "document",
    [
        {},
        [],
        "command",
        42,
        None,
        {"command": ["true"], "handler": "a:b"},
        {"cmd": ["true"]},
    ],
)
def test_anything_but_a_command_or_a_handler_is_unsupported(document: Any) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(document)
    assert caught.value.message == UNSUPPORTED_PAYLOAD


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        (b'{"command": ["true"], "timeout_s": NaN}', "NaN is not a JSON number"),
        (b'{"command": ["true"], "timeout_s": Infinity}', "Infinity is not a JSON number"),
        (b'{"command": ["true"], "command": ["false"]}', "duplicate key 'command'"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"handler": "a:b", "args": [' + b"9" * 5000 + b"]}", "not valid JSON"),
    ],
)
def test_malformed_json_is_a_payload_error(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_payload(payload)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"command": []}, "non-empty list of strings"),
        ({"command": "echo hi"}, "non-empty list of strings"),
        ({"command": ["echo", 1]}, r'"command"\[1\] must be a string'),
        ({"command": [""]}, "must name an executable"),
        ({"command": ["echo", "a\0b"]}, "NUL"),
        ({"command": ["echo", "\ud800"]}, "lone surrogate"),
        ({"command": ["x"] * (MAX_ARGV_ITEMS + 1)}, "the limit is"),
        ({"command": ["echo", "x" * (200 * 1024)]}, "longer than"),
        ({"command": ["true"], "env": ["A=1"]}, '"env" must be an object'),
        ({"command": ["true"], "env": {"A": 1}}, "must be a string"),
        ({"command": ["true"], "env": {"A=B": "1"}}, "is not a variable name"),
        ({"command": ["true"], "env": {"": "1"}}, "is not a variable name"),
        ({"command": ["true"], "env": {"1A": "1"}}, "is not a variable name"),
        ({"command": ["true"], "env": {"A B": "1"}}, "is not a variable name"),
        ({"command": ["true"], "timeout_s": 7 * 24 * 3600 + 1}, "at most 604800 seconds"),
        ({"handler": "a:b\n"}, "control characters"),
        ({"command": ["true"], "cwd": ""}, '"cwd" must not be empty'),
        ({"command": ["true"], "cwd": 5}, '"cwd" must be a string'),
        ({"command": ["true"], "stdin": ["a"]}, '"stdin" must be a string'),
        ({"command": ["true"], "stdin": "\udc80"}, "lone surrogate"),
        ({"command": ["true"], "timeout_s": 0}, "positive number"),
        ({"command": ["true"], "timeout_s": -1}, "positive number"),
        ({"command": ["true"], "timeout_s": "5"}, "positive number"),
        ({"command": ["true"], "timeout_s": True}, "positive number"),
        ({"command": ["true"], "timeout_s": 10**400}, "positive number"),
        ({"command": ["true"], "timeout": 5}, "unknown field"),
        ({"handler": ""}, "non-empty string"),
        ({"handler": ["a:b"]}, "non-empty string"),
        ({"handler": "a" * 513}, "longer than"),
        ({"handler": "a:b", "args": {"x": 1}}, '"args" must be a list'),
        ({"handler": "a:b", "kwargs": [1]}, '"kwargs" must be an object'),
        ({"handler": "a:b", "env": {}}, "unknown field"),
    ],
)
def test_invalid_fields_are_named_in_the_error(document: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse(document)


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "ld_preload",
        "DYLD_INSERT_LIBRARIES",
        "BASH_ENV",
        "ENV",
        "BASH_FUNC_ls%%"[:-2],
        "SHELLOPTS",
        "PS4",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PERL5OPT",
        "NODE_OPTIONS",
        "GCONV_PATH",
    ],
)
def test_env_cannot_set_loader_shell_or_interpreter_start_up_variables(name: str) -> None:
    with pytest.raises(PayloadError, match=f'"env" may not set {name}'):
        parse({"command": ["true"], "env": {name: "/tmp/evil.so"}})


def test_ordinary_variables_and_the_longest_timeout_are_accepted() -> None:
    spec = parse(
        {
            "command": ["true"],
            "env": {"GREETING": "hi", "_X1": "", "LANGUAGE": "en", "MY_LD_FLAG": "1"},
            "timeout_s": 7 * 24 * 3600,
        }
    )
    assert isinstance(spec, CommandSpec)
    assert spec.env["MY_LD_FLAG"] == "1"
    assert spec.timeout_s == 7 * 24 * 3600


def test_payload_errors_are_invalid_arguments() -> None:
    assert issubclass(PayloadError, InvalidArgument)


def test_timeouts_are_worded_alike() -> None:
    assert timed_out_message(5.0) == "timed out after 5s"
    assert timed_out_message(0.25) == "timed out after 0.25s"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
FIELD_NAMES = st.sampled_from(
    ["command", "handler", "env", "cwd", "timeout_s", "stdin", "args", "kwargs", "other"]
)
PAYLOAD_LIKE = st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6) | st.fixed_dictionaries(
    {"command": st.lists(st.text(), max_size=4)},
    optional={"env": st.dictionaries(st.text(), st.text()), "timeout_s": JSON_VALUES},
)


@given(JSON_VALUES | PAYLOAD_LIKE)
def test_any_json_value_parses_or_is_a_payload_error(document: Any) -> None:
    outcome: object
    try:
        outcome = parse(document)
    except PayloadError as exc:
        outcome = exc
    if isinstance(outcome, PayloadError):
        assert outcome.message
    else:
        assert isinstance(outcome, CommandSpec | HandlerSpec)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_a_payload_error(payload: bytes) -> None:
    with contextlib.suppress(PayloadError):
        parse_payload(payload)
