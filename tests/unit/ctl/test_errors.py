"""gRPC failures in words: one line each, the server's own message kept when it has one."""

from __future__ import annotations

import pytest

from jobq.ctl.errors import CtlError, connection_problem, describe_rpc_error, one_line

ADDR = "db1:50051"


def describe(code: str, details: str = "", subject: str = "", timeout_s: float = 10) -> str:
    return describe_rpc_error(code, details, server_addr=ADDR, timeout_s=timeout_s, subject=subject)


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        ("NOT_FOUND", "job 3f2a not found", "job 3f2a not found"),
        ("NOT_FOUND", "", "job 3f2a not found"),
        ("ALREADY_EXISTS", "queue 'x' already exists", "queue 'x' already exists"),
        ("ALREADY_EXISTS", "", "job 3f2a already exists"),
        (
            "FAILED_PRECONDITION",
            "cannot cancel job 3f2a: it is RUNNING",
            "cannot cancel job 3f2a: it is RUNNING",
        ),
        ("INVALID_ARGUMENT", "priority must be 0..9, got 12", "priority must be 0..9, got 12"),
        (
            "INTERNAL",
            "internal error; see the server log",
            "jq-server failed: internal error; see the server log",
        ),
    ],
)
def test_server_messages_are_kept(code: str, details: str, expected: str) -> None:
    assert describe(code, details, subject="job 3f2a") == expected


@pytest.mark.parametrize(
    ("details", "reason"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Failed to connect to remote host: Connection refused",
            "connection refused",
        ),
        (
            "errors resolving nohost:50051: [field:hostname lookup error:address lookup failed "
            "for nohost:50051: Domain name not found]",
            "unknown host",
        ),
        (
            "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:10.0.0.1:443: "
            "Ssl handshake failed (TSI_PROTOCOL_FAILURE)",
            "TLS handshake failed",
        ),
        ("failed to connect to all addresses", "no connection"),
        ("", "no connection"),
    ],
)
def test_connection_failures_say_where_the_server_was_expected(details: str, reason: str) -> None:
    assert describe("UNAVAILABLE", details) == f"cannot reach jq-server at {ADDR} ({reason})"


def test_a_server_that_says_it_is_unavailable_is_quoted() -> None:
    details = "the database is unavailable; try again shortly"
    assert connection_problem(details) is None
    assert describe("UNAVAILABLE", details) == (
        f"jq-server at {ADDR} is unavailable: the database is unavailable; try again shortly"
    )


def test_deadline_names_the_timeout() -> None:
    assert describe("DEADLINE_EXCEEDED", "Deadline Exceeded", timeout_s=10) == (
        "jq-server did not answer within 10s"
    )
    assert describe("DEADLINE_EXCEEDED", "", timeout_s=0.5) == (
        "jq-server did not answer within 0.5s"
    )


@pytest.mark.parametrize(
    "code",
    [
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "UNIMPLEMENTED",
        "CANCELLED",
        "UNKNOWN",
        "DATA_LOSS",
        "ABORTED",
    ],
)
def test_every_code_is_one_line(code: str) -> None:
    text = describe(code, "first line\n  Traceback (most recent call last):\n  more")
    assert "\n" not in text
    assert text


def test_ctl_errors_are_one_line_with_an_exit_code() -> None:
    error = CtlError("cannot read\n--tls-ca file")
    assert str(error) == "cannot read --tls-ca file"
    assert error.exit_code == 1
    assert CtlError("usage", 2).exit_code == 2
    assert one_line("  a \n\t b ") == "a b"


def test_unauthenticated_keeps_the_server_message_and_names_the_credential_options() -> None:
    details = (
        "missing credential: send a bearer token (authorization: Bearer ...) or a client "
        "certificate"
    )
    assert describe("UNAUTHENTICATED", details) == (
        f"jq-server did not accept the call: {details} (give a token with --token, "
        "JQ_CTL_TOKEN or --token-file, or a client certificate with --tls-cert and --tls-key)"
    )
    assert describe("UNAUTHENTICATED").startswith(
        "jq-server did not accept the call: unauthenticated ("
    )


def test_permission_denied_keeps_the_server_message_and_hints_at_another_token() -> None:
    details = "token 'ci' lacks the admin scope needed by AdminService/DeleteQueue"
    assert describe("PERMISSION_DENIED", details) == (
        f"permission denied: {details} (use a token with that scope: --token, JQ_CTL_TOKEN or "
        "--token-file)"
    )
    assert "--token-file" in describe("PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("details", "sizes"),
    [
        (
            "Received message larger than max (5242893 vs. 4194304)",
            " (5242893 bytes; it takes at most 4194304)",
        ),
        (
            "Sent message larger than max (9000000 vs. 4194304)",
            " (9000000 bytes; it takes at most 4194304)",
        ),
        ("received message LARGER THAN MAX", ""),
    ],
)
def test_a_message_over_the_size_limit_names_the_payload_limit(details: str, sizes: str) -> None:
    assert describe("RESOURCE_EXHAUSTED", details) == (
        f"the request is larger than jq-server accepts{sizes}; job payloads are limited by the "
        "server's limits.max_payload_bytes"
    )


def test_other_resource_exhaustion_is_quoted() -> None:
    assert describe("RESOURCE_EXHAUSTED", "too many streams") == (
        "jq-server refused the request as too large or too many: too many streams"
    )
