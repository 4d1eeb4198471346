"""A job's payload: what it asks a worker to run, parsed and checked in one place.

Payloads are untrusted bytes from any client (SPEC §7). jq-server parses each one at submit, so
a malformed payload is refused at the door (INVALID_ARGUMENT naming the field) instead of
failing on a worker, retried; the worker parses it again into typed specs, so the executors
never touch raw JSON and a payload from an older server still cannot crash it. Every way a
payload can be wrong becomes one `PayloadError` with a message for the person who submitted it:

    {"command": ["argv0", "arg", ...], "env": {...}, "cwd": "...", "timeout_s": N, "stdin": "..."}
    {"handler": "package.module:function", "args": [...], "kwargs": {...}, "timeout_s": N}

Validation is strict: unknown fields (a typo such as `"timeout"` would otherwise be silently
ignored), duplicate object keys, the non-standard constants NaN/Infinity and strings that
cannot be encoded as UTF-8 or passed to exec (NUL bytes, lone surrogates) are all refused.
`env` may not set variables that make a loader, shell or interpreter run code of the
submitter's choosing before the command itself (`DENIED_ENV_NAMES`, `DENIED_ENV_PREFIXES`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Final, NoReturn

from jobq.domain.errors import InvalidArgument
from jobq.domain.records import record

__all__ = [
    "DENIED_ENV_NAMES",
    "DENIED_ENV_PREFIXES",
    "MAX_ARGV_ITEMS",
    "MAX_ENV_ITEMS",
    "MAX_HANDLER_NAME_LENGTH",
    "MAX_STRING_BYTES",
    "MAX_TIMEOUT_S",
    "UNSUPPORTED_PAYLOAD",
    "CommandSpec",
    "HandlerSpec",
    "PayloadError",
    "check_document",
    "parse_payload",
]

UNSUPPORTED_PAYLOAD: Final = 'unsupported payload: expected an object with "command" or "handler"'

MAX_ARGV_ITEMS: Final = 4096
"""Most argv items a command may have; far above real commands, far below the kernel's limit."""
MAX_ENV_ITEMS: Final = 1024
"""Most variables a command payload may add to the child's environment."""
MAX_STRING_BYTES: Final = 128 * 1024
"""Longest argv item, variable or cwd, in UTF-8 bytes (Linux refuses longer exec strings)."""
MAX_TIMEOUT_S: Final = 7 * 24 * 3600.0
"""Longest `timeout_s` a payload may ask for: a week."""
MAX_HANDLER_NAME_LENGTH: Final = 512
"""Longest `handler` name (also the longest name `@jobq.task` registers)."""

DENIED_ENV_NAMES: Final = frozenset(
    {
        # shells: files sourced, code run or parsing changed before the command runs
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        # interpreters: code or modules loaded at start-up
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PYTHONBREAKPOINT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5OPT",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        # the C library: modules and resolver files loaded from a path the variable names
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "NLSPATH",
        "MALLOC_CHECK_",
        "MALLOC_TRACE",
    }
)
"""Variables a payload's `env` may not set: each makes a shell, an interpreter or the C library
run or load code of the submitter's choosing before (or instead of) the allowed command."""
DENIED_ENV_PREFIXES: Final = ("LD_", "DYLD_", "BASH_FUNC_")
"""Prefixes a payload's `env` names may not have: the dynamic loader's variables (LD_PRELOAD,
LD_LIBRARY_PATH, LD_AUDIT ...) and bash's exported functions."""
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_ENV_NAME_BYTES: Final = 256

_COMMAND_FIELDS: Final = frozenset({"command", "env", "cwd", "timeout_s", "stdin"})
_HANDLER_FIELDS: Final = frozenset({"handler", "args", "kwargs", "timeout_s"})


class PayloadError(InvalidArgument):
    """The payload is not one a worker can run; the message names the field and says why
    (INVALID_ARGUMENT at submit; a job's error_message on a worker)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@record
class CommandSpec:
    """Run `argv` as a child process, without a shell."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_s: float | None = None
    stdin: bytes | None = None


@record
class HandlerSpec:
    """Call the trusted Python function named `handler` with `args` and `kwargs`."""

    handler: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None


def parse_payload(payload: bytes) -> CommandSpec | HandlerSpec:
    """Parse and validate a job payload.

    Raises:
        PayloadError: on anything but a well-formed command or handler payload.
    """
    try:
        # json.loads with hooks would build a new decoder for every payload.
        document = _DECODER.decode(payload.decode(json.detect_encoding(payload), "surrogatepass"))
    except PayloadError:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON, undecodable bytes and integers too long to convert.
        raise PayloadError(f"payload is not valid JSON: {_short(str(exc))}") from None
    return check_document(document)


def check_document(document: object) -> CommandSpec | HandlerSpec:
    """The checks of parse_payload on an already decoded payload (a client that has just
    encoded the document checks it without decoding it again)."""
    if not isinstance(document, dict):
        raise PayloadError(UNSUPPORTED_PAYLOAD)
    is_command = "command" in document
    if is_command == ("handler" in document):
        raise PayloadError(UNSUPPORTED_PAYLOAD)
    if is_command:
        return _command_spec(document)
    return _handler_spec(document)


def _command_spec(document: Mapping[str, Any]) -> CommandSpec:
    _refuse_unknown_fields(document, _COMMAND_FIELDS, "command")
    argv = document["command"]
    if not isinstance(argv, list) or not argv:
        _fail('"command" must be a non-empty list of strings')
    if len(argv) > MAX_ARGV_ITEMS:
        _fail(f'"command" has {len(argv)} items; the limit is {MAX_ARGV_ITEMS}')
    for index, item in enumerate(argv):
        _check_exec_string(item, f'"command"[{index}]')
    if not argv[0]:
        _fail('"command"[0] must name an executable')

    env = document.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        _fail('"env" must be an object of strings')
    if len(env) > MAX_ENV_ITEMS:
        _fail(f'"env" has {len(env)} variables; the limit is {MAX_ENV_ITEMS}')
    for key, value in env.items():
        _check_env_name(key)
        _check_exec_string(value, f'"env"[{_short(key)!r}]')

    cwd = document.get("cwd")
    if cwd is not None:
        _check_exec_string(cwd, '"cwd"')
        if not cwd:
            _fail('"cwd" must not be empty')

    stdin = document.get("stdin")
    stdin_bytes: bytes | None = None
    if stdin is not None:
        if not isinstance(stdin, str):
            _fail('"stdin" must be a string')
        stdin_bytes = _utf8(stdin, '"stdin"')

    return CommandSpec(
        argv=tuple(argv),
        env=dict(env),
        cwd=cwd,
        timeout_s=_timeout(document.get("timeout_s")),
        stdin=stdin_bytes,
    )


def _handler_spec(document: Mapping[str, Any]) -> HandlerSpec:
    _refuse_unknown_fields(document, _HANDLER_FIELDS, "handler")
    handler = document["handler"]
    if not isinstance(handler, str) or not handler:
        _fail('"handler" must be a non-empty string such as "package.module:function"')
    if len(handler) > MAX_HANDLER_NAME_LENGTH:
        _fail(f'"handler" is longer than {MAX_HANDLER_NAME_LENGTH} characters')
    if not handler.isprintable():
        _fail('"handler" must not contain control characters')
    args = document.get("args")
    if args is None:
        args = []
    if not isinstance(args, list):
        _fail('"args" must be a list')
    kwargs = document.get("kwargs")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        _fail('"kwargs" must be an object')
    return HandlerSpec(
        handler=handler,
        args=args,
        kwargs=kwargs,
        timeout_s=_timeout(document.get("timeout_s")),
    )


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    # bool is an int subclass; `true` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail('"timeout_s" must be a positive number of seconds')
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond the float range
        seconds = math.inf
    if not math.isfinite(seconds) or seconds <= 0:
        _fail('"timeout_s" must be a positive number of seconds')
    if seconds > MAX_TIMEOUT_S:
        _fail(f'"timeout_s" must be at most {MAX_TIMEOUT_S:g} seconds (a week), got {seconds:g}')
    return seconds


def _check_env_name(name: object) -> None:
    """A variable name of letters, digits and _, not starting with a digit, and not one that
    runs code before the command (the deny list above)."""
    _check_exec_string(name, '"env" name')
    assert isinstance(name, str)
    if not _ENV_NAME.fullmatch(name) or len(name) > _MAX_ENV_NAME_BYTES:
        _fail(
            f'"env" name {_short(name)!r} is not a variable name: use letters, digits and _, '
            f"not starting with a digit (at most {_MAX_ENV_NAME_BYTES} characters)"
        )
    upper = name.upper()
    if upper in DENIED_ENV_NAMES or upper.startswith(DENIED_ENV_PREFIXES):
        _fail(
            f'"env" may not set {name}: it makes a loader, shell or interpreter run code '
            "before the command (see DENIED_ENV_NAMES in jobq.domain.payload)"
        )


def _check_exec_string(value: object, what: str) -> None:
    """Strings that reach exec must be text, UTF-8 encodable, NUL-free and of bounded length."""
    if not isinstance(value, str):
        _fail(f"{what} must be a string")
    encoded = _utf8(value, what)
    if b"\0" in encoded:
        _fail(f"{what} must not contain NUL characters")
    if len(encoded) > MAX_STRING_BYTES:
        _fail(f"{what} is longer than {MAX_STRING_BYTES} bytes")


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        _fail(f"{what} is not valid Unicode text (it contains a lone surrogate)")


def _refuse_unknown_fields(document: Mapping[str, Any], known: frozenset[str], kind: str) -> None:
    unknown = sorted(set(document) - known)
    if unknown:
        shown = ", ".join(repr(_short(name)) for name in unknown[:5])
        _fail(f"unknown field(s) in {kind} payload: {shown}; expected {', '.join(sorted(known))}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _fail(f"payload has a duplicate key {_short(key)!r}")
            seen.add(key)
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise PayloadError(f"payload is not valid JSON: {name} is not a JSON number")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)


def _fail(message: str) -> NoReturn:
    raise PayloadError(message)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
