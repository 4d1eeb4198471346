"""The retry policy of SPEC §4 with an injected clock and random source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.retry import RetryPolicy, decide_after_failure
from jobq.domain.states import JobStatus, Reason

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retry_count", "expected"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (5, 160.0), (6, 300.0), (60, 300.0), (5000, 300.0)],
)
def test_delay_doubles_up_to_the_cap(retry_count: int, expected: float) -> None:
    policy = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
    assert policy.delay_s(retry_count) == expected


def test_jitter_is_a_fraction_of_the_base_delay() -> None:
    policy = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.5)
    assert policy.delay_s(1) == 12.5
    assert policy.delay_s(99) == 302.5


@given(
    retry_count=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=100.0, max_value=10_000.0),
    rand=st.floats(min_value=0.0, max_value=0.999999),
)
def test_delay_stays_within_cap_plus_base(
    retry_count: int, base: float, cap: float, rand: float
) -> None:
    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap, random_source=lambda: rand)
    delay = policy.delay_s(retry_count)
    assert 0.0 <= delay <= cap + base


def test_failure_with_retries_left_goes_back_to_pending_later() -> None:
    policy = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
    decision = decide_after_failure(retry_count=0, max_retries=3, now=NOW, policy=policy)
    assert decision.to_status is JobStatus.PENDING
    assert decision.reason is Reason.RETRY
    assert decision.retry_count == 1
    assert decision.not_before == NOW + timedelta(seconds=10)


def test_failure_with_no_retries_left_is_dead_lettered() -> None:
    decision = decide_after_failure(retry_count=3, max_retries=3, now=NOW, policy=RetryPolicy())
    assert decision.to_status is JobStatus.DEAD_LETTERED
    assert decision.reason is Reason.RETRIES_EXHAUSTED
    assert decision.retry_count == 3
    assert decision.not_before is None


def test_max_retries_zero_dead_letters_at_once() -> None:
    decision = decide_after_failure(retry_count=0, max_retries=0, now=NOW, policy=RetryPolicy())
    assert decision.to_status is JobStatus.DEAD_LETTERED


def test_a_cancel_requested_ends_the_job_cancelled_whatever_the_budget() -> None:
    from datetime import UTC, datetime

    from jobq.domain.retry import RetryPolicy, decide_after_failure
    from jobq.domain.states import JobStatus, Reason

    decision = decide_after_failure(
        0, 5, datetime(2030, 1, 1, tzinfo=UTC), RetryPolicy(), cancel_requested=True
    )
    assert (decision.to_status, decision.reason, decision.retry_count, decision.not_before) == (
        JobStatus.DEAD_LETTERED,
        Reason.CANCELLED,
        0,
        None,
    )
