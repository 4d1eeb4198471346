"""A job its worker refused is dead-lettered at once, whatever retries it has left."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.retry import RetryDecision, RetryPolicy, decide_after_failure
from jobq.domain.states import JobStatus, Reason

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@given(retry_count=st.integers(0, 100), max_retries=st.integers(0, 100))
def test_a_refusal_dead_letters_at_once_with_retry_count_unchanged(
    retry_count: int, max_retries: int
) -> None:
    decision = decide_after_failure(retry_count, max_retries, NOW, RetryPolicy(), refused=True)
    assert decision == RetryDecision(JobStatus.DEAD_LETTERED, Reason.REFUSED, retry_count, None)


def test_without_the_flag_a_failure_is_still_retried() -> None:
    decision = decide_after_failure(0, 3, NOW, RetryPolicy(random_source=lambda: 0.0))
    assert (decision.to_status, decision.reason, decision.retry_count) == (
        JobStatus.PENDING,
        Reason.RETRY,
        1,
    )
