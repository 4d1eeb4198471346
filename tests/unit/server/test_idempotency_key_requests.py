"""SubmitJobRequest.idempotency_key as new_job_from_request reads it: empty means none, else
1..255 printable ASCII characters, or InvalidArgument naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.config.settings import LimitsSettings
from jobq.domain.errors import InvalidArgument
from jobq.rpc._gen import job_service_pb2 as pb
from jobq.server.submission import new_job_from_request

NOW = datetime(2024, 5, 1, tzinfo=UTC)
PAYLOAD = b'{"command": ["true"]}'


def _key(key: str) -> str | None:
    request = pb.SubmitJobRequest(queue_name="default", payload=PAYLOAD, idempotency_key=key)
    return new_job_from_request(request, LimitsSettings(), NOW).idempotency_key


def test_an_empty_key_means_none() -> None:
    assert _key("") is None
    assert (
        new_job_from_request(
            pb.SubmitJobRequest(queue_name="default", payload=PAYLOAD), LimitsSettings(), NOW
        ).idempotency_key
        is None
    )


@pytest.mark.parametrize("key", ["a", "order-42", "x" * 255, " ~!{}", "tenant/7:invoice#12"])
def test_printable_ascii_keys_up_to_255_characters_are_kept_as_given(key: str) -> None:
    assert _key(key) == key


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=255
    )
)
def test_any_printable_ascii_key_is_accepted(key: str) -> None:
    assert _key(key) == key


def test_a_key_of_256_characters_is_refused() -> None:
    with pytest.raises(
        InvalidArgument, match=r"^idempotency_key is at most 255 characters, got 256$"
    ):
        _key("x" * 256)


@pytest.mark.parametrize(
    ("key", "position", "shown"),
    [
        ("tab\there", 3, r"'\\t'"),
        ("new\nline", 3, r"'\\n'"),
        ("nul\x00", 3, r"'\\x00'"),
        ("del\x7f", 3, r"'\\x7f'"),
        ("caf\u00e9", 3, "'\u00e9'"),
        ("\u2603", 0, "'\u2603'"),
    ],
)
def test_a_key_with_a_character_outside_printable_ascii_is_refused(
    key: str, position: int, shown: str
) -> None:
    with pytest.raises(
        InvalidArgument,
        match=rf"^idempotency_key must be printable ASCII: character {position} is {shown}$",
    ):
        _key(key)
