"""What jq-ctl says when something goes wrong: one human line and an exit code.

gRPC status codes become words. The server's messages are already written for people ("job …
not found", "cannot cancel job …: it is DONE"), so they are kept; what the client library says
about connections ("failed to connect to all addresses; last error: UNKNOWN: ipv4:…") is not, and
becomes "cannot reach jq-server at HOST:PORT (connection refused)".
"""

from __future__ import annotations

import re

EXIT_FAILURE = 1
"""The server refused or failed the request, or could not be reached."""
EXIT_USAGE = 2
"""The command line or configuration is wrong (typer's code for usage errors)."""


class CtlError(Exception):
    """An error to print as `jq-ctl: <message>` on stderr before exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(one_line(message))
        self.exit_code = exit_code


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


# Fragments of the client library's own messages (not the server's) and how to say them.
_CONNECTION_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("connection refused",), "connection refused"),
    (("errors resolving", "dns resolution", "lookup", "name resolution"), "unknown host"),
    (("handshake", "ssl", "tls", "certificate"), "TLS handshake failed"),
    (("connection reset", "socket closed", "broken pipe", "end of tcp stream"), "connection lost"),
    (("timed out", "timeout"), "connection timed out"),
    (("failed to connect", "empty address list", "connections to all backends"), "no connection"),
)


def connection_problem(details: str) -> str | None:
    """The reason, in words, when an UNAVAILABLE status came from the client's connection
    attempt rather than from the server; None when the server itself said it is unavailable."""
    lowered = details.lower()
    for fragments, reason in _CONNECTION_REASONS:
        if any(fragment in lowered for fragment in fragments):
            return reason
    return None


TOKEN_OPTIONS = "--token, JQ_CTL_TOKEN or --token-file"  # noqa: S105 (option names)
CREDENTIAL_HINT = (
    f"give a token with {TOKEN_OPTIONS}, or a client certificate with --tls-cert and --tls-key"
)

# gRPC's own words for a message over the limit, on either side: "Received message larger
# than max (5242893 vs. 4194304)", "Sent message larger than max (...)".
_TOO_LARGE = re.compile(r"message larger than max(?: \((\d+) vs\. (\d+)\))?", re.IGNORECASE)


def _resource_exhausted(message: str) -> str:
    too_large = _TOO_LARGE.search(message)
    if too_large is None:
        return f"jq-server refused the request as too large or too many: {message or 'no reason'}"
    sizes = ""
    if too_large.group(1):
        sizes = f" ({too_large.group(1)} bytes; it takes at most {too_large.group(2)})"
    return (
        f"the request is larger than jq-server accepts{sizes}; job payloads are limited by the "
        "server's limits.max_payload_bytes"
    )


def format_seconds(seconds: float) -> str:
    """`10s`, `0.5s`: a timeout as the operator typed it."""
    return f"{seconds:g}s"


def describe_rpc_error(
    code: str, details: str, *, server_addr: str, timeout_s: float, subject: str = ""
) -> str:
    """One line for a failed call. `code` is the gRPC status name (`NOT_FOUND`); `details` the
    status message; `subject` names what the call was about (`job 0190…`) for codes whose
    message the server left empty."""
    message = one_line(details)
    about = subject or "the object"
    if code == "UNAVAILABLE":
        reason = connection_problem(message)
        if reason is not None or not message:
            return f"cannot reach jq-server at {server_addr} ({reason or 'no connection'})"
        return f"jq-server at {server_addr} is unavailable: {message}"
    if code == "DEADLINE_EXCEEDED":
        return f"jq-server did not answer within {format_seconds(timeout_s)}"
    if code == "NOT_FOUND":
        return message or f"{about} not found"
    if code == "ALREADY_EXISTS":
        return message or f"{about} already exists"
    if code == "FAILED_PRECONDITION":
        return message or f"{about} is not in a state that allows this"
    if code == "INVALID_ARGUMENT":
        return message or "jq-server rejected the request as invalid"
    if code == "UNAUTHENTICATED":
        return (
            f"jq-server did not accept the call: {message or 'unauthenticated'} ({CREDENTIAL_HINT})"
        )
    if code == "PERMISSION_DENIED":
        return (
            f"permission denied: {message or 'the credential does not allow this call'} "
            f"(use a token with that scope: {TOKEN_OPTIONS})"
        )
    if code == "RESOURCE_EXHAUSTED":
        return _resource_exhausted(message)
    if code == "UNIMPLEMENTED":
        return f"jq-server at {server_addr} does not support this call (is it an older version?)"
    if code == "CANCELLED":
        return "the call was cancelled"
    if code == "INTERNAL":
        return f"jq-server failed: {message or 'internal error'}"
    return f"jq-server error {code}: {message}" if message else f"jq-server error {code}"
