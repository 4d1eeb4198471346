"""Input rules and time-ordered ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.errors import InvalidArgument
from jobq.domain.ids import uuid7, uuid7_text
from jobq.domain.validation import (
    check_max_retries,
    check_payload_size,
    check_priority,
    check_queue_name,
    parse_uuid,
)

VALID_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=1,
    max_size=128,
)


@given(VALID_NAME)
def test_valid_queue_names_pass(name: str) -> None:
    assert check_queue_name(name) == name


@given(st.text(min_size=1, max_size=200))
def test_queue_names_outside_the_alphabet_or_too_long_fail(name: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    if set(name) <= allowed and len(name) <= 128:
        assert check_queue_name(name) == name
    else:
        with pytest.raises(InvalidArgument, match="invalid queue name"):
            check_queue_name(name)


@pytest.mark.parametrize("name", ["", "a b", "x" * 129, "name/slash", "émail", "a\n"])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_queue_name(name)


@pytest.mark.parametrize("value", ["", "123", "not-a-uuid", "z" * 100, "3f2a"])
def test_malformed_ids_are_invalid_argument(value: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed job id"):
        parse_uuid(value)


def test_a_uuid_parses() -> None:
    value = uuid.uuid4()
    assert parse_uuid(str(value)) == value


@pytest.mark.parametrize("priority", [-1, 10, 1000])
def test_priority_out_of_range(priority: int) -> None:
    with pytest.raises(InvalidArgument, match="between 0 and 9"):
        check_priority(priority)


def test_priority_bounds_are_inclusive() -> None:
    assert check_priority(0) == 0
    assert check_priority(9) == 9


def test_payload_size_limit() -> None:
    assert check_payload_size(b"x" * 10, 10) == b"x" * 10
    with pytest.raises(InvalidArgument, match="11 bytes; the limit is 10"):
        check_payload_size(b"x" * 11, 10)


def test_max_retries_range() -> None:
    assert check_max_retries(0) == 0
    with pytest.raises(InvalidArgument):
        check_max_retries(-1)
    with pytest.raises(InvalidArgument):
        check_max_retries(1001)


def test_uuid7_is_version_7_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert all(i.version == 7 for i in ids)
    assert all(i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_uuid7_text_is_what_str_makes_of_a_uuid7() -> None:
    texts = [uuid7_text() for _ in range(10_000)]
    parsed = [uuid.UUID(text) for text in texts]
    assert [str(u) for u in parsed] == texts
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == len(parsed)
