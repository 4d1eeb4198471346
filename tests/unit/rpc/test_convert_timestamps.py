"""convert.timestamp computes proto Timestamps itself; it must agree with protobuf's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from jobq.rpc.convert import from_timestamp, timestamp

_MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=9))]),
)


@given(_MOMENTS)
def test_agrees_with_from_datetime(moment: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(moment.astimezone(UTC))
    assert timestamp(moment) == expected
    assert from_timestamp(expected) == moment


def test_a_naive_time_is_utc_and_none_stays_unset() -> None:
    naive = datetime(2024, 5, 1, 12, 0, 0, 123456)
    expected = Timestamp()
    expected.FromDatetime(naive)
    assert timestamp(naive) == expected
    assert (expected.seconds, expected.nanos) == (1714564800, 123456000)
    assert timestamp(None) is None
