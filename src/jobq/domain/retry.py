"""The retry policy of SPEC §4: exponential backoff with a cap and uniform jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobq.domain.states import JobStatus, Reason


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`min(base · 2^n, max) + jitter`, jitter uniform in [0, base), n the new retry_count."""

    base_delay_s: float = 5.0
    max_delay_s: float = 300.0
    random_source: Callable[[], float] = random.random

    def delay_s(self, retry_count: int) -> float:
        """Seconds to wait before the `retry_count`-th retry (1 for the first)."""
        # Cap the exponent first: 2**1000 as a float overflows long before max_delay matters.
        exponential = self.base_delay_s * float(2 ** min(retry_count, 62))
        jitter = self.random_source() * self.base_delay_s
        return float(min(exponential, self.max_delay_s) + jitter)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Where a failed job goes next, and when it may run again."""

    to_status: JobStatus
    reason: Reason
    retry_count: int
    not_before: datetime | None


def decide_after_failure(
    retry_count: int,
    max_retries: int,
    now: datetime,
    policy: RetryPolicy,
    *,
    refused: bool = False,
    cancel_requested: bool = False,
) -> RetryDecision:
    """Retry with backoff while retries remain, else dead-letter (RETRIES_EXHAUSTED).

    A job whose cancel was requested (CancelJob while it ran) is never run again: it is
    dead-lettered at once (CANCELLED), retry_count unchanged, whatever its failure.

    A job its worker `refused` (not allowed to run, or a payload no worker can run) is
    dead-lettered at once (REFUSED) with its retry_count unchanged: every retry would be refused
    the same way, only later, and would hide the refusal behind RETRIES_EXHAUSTED."""
    if cancel_requested:
        return RetryDecision(JobStatus.DEAD_LETTERED, Reason.CANCELLED, retry_count, None)
    if refused:
        return RetryDecision(JobStatus.DEAD_LETTERED, Reason.REFUSED, retry_count, None)
    if retry_count < max_retries:
        next_count = retry_count + 1
        not_before = now + timedelta(seconds=policy.delay_s(next_count))
        return RetryDecision(JobStatus.PENDING, Reason.RETRY, next_count, not_before)
    return RetryDecision(JobStatus.DEAD_LETTERED, Reason.RETRIES_EXHAUSTED, retry_count, None)
