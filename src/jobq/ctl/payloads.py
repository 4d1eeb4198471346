"""The payload of `jq-ctl job submit`, from exactly one of `--payload JSON`,
`--payload-file FILE` (`-` reads stdin) or `-- CMD ARGS...`.

Payloads are JSON (the worker refuses anything else), so the first two are checked here: a typo
is a usage error on the operator's terminal instead of a dead-lettered job later. The command
form builds `{"command": [CMD, ARGS...]}`, which the worker runs without a shell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from jobq.ctl.errors import EXIT_USAGE, CtlError


def build_payload(payload: str | None, payload_file: Path | None, command: Sequence[str]) -> bytes:
    """The payload bytes to submit; CtlError (a usage error) unless exactly one source is given
    or when the JSON does not parse."""
    given = [name for name, value in _sources(payload, payload_file, command) if value]
    if len(given) != 1:
        shown = " and ".join(given) if given else "none"
        raise CtlError(
            f"give exactly one of --payload, --payload-file or -- CMD ARGS... (got {shown})",
            EXIT_USAGE,
        )
    if command:
        return json.dumps({"command": list(command)}).encode()
    if payload is not None:
        return _checked_json(payload.encode(), "--payload")
    assert payload_file is not None
    return _checked_json(_read(payload_file), f"--payload-file {payload_file}")


def _sources(
    payload: str | None, payload_file: Path | None, command: Sequence[str]
) -> list[tuple[str, bool]]:
    return [
        ("--payload", payload is not None),
        ("--payload-file", payload_file is not None),
        ("-- CMD ARGS", bool(command)),
    ]


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CtlError(f"cannot read --payload-file {path}: {reason}", EXIT_USAGE) from None


def _checked_json(data: bytes, origin: str) -> bytes:
    try:
        json.loads(data.decode("utf-8"))  # json.loads(bytes) would also accept UTF-16 and -32
    except UnicodeDecodeError:
        raise CtlError(f"{origin} is not UTF-8 text, so not JSON", EXIT_USAGE) from None
    except json.JSONDecodeError as exc:
        raise CtlError(
            f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            EXIT_USAGE,
        ) from None
    return data
