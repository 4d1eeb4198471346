"""Which failed calls the SDK repeats, and how long it waits in between.

A call is repeated only when repeating it cannot do harm:

- UNAVAILABLE (the server could not be reached, or its database is away) for every read
  (GetJobStatus, GetJobLogs, ListJobs, WatchJobs) and every submit;
- DEADLINE_EXCEEDED for submits only: the first attempt may have committed, but every submit
  carries an idempotency key, so the repeat returns the job the first one created instead of
  creating a second.

CancelJob and RetryJob are never repeated: a repeat of one that did commit would answer
FAILED_PRECONDITION for a request that in fact succeeded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

import grpc

__all__ = ["DEFAULT_RETRY", "RetryPolicy", "is_retryable"]

_ALWAYS: Final = frozenset({grpc.StatusCode.UNAVAILABLE})
_SUBMIT: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` tries in all, within `max_elapsed_s` of the first, waiting an
    exponential backoff with full jitter between them (AWS's "full jitter": many clients that
    failed together do not retry together).

    The default keeps repeating for about 20 s: a PostgreSQL failover under Patroni took 4 to
    11 s from the primary's death to the first acknowledged write (tests/fault/
    test_patroni_failover.py, which submits with this default), and a jq-server restart
    behind a load balancer a few seconds. The SDK's earlier default (5 tries, about 1.5 s of
    backoff) gave up in the middle of either, and a submit the application then repeats gets
    a new idempotency key. Google's client libraries retry idempotent calls for 60 s and
    more; 20 s keeps a caller that faces a server that is really gone from waiting too long.
    """

    attempts: int = 30
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    max_elapsed_s: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("need 0 <= initial_backoff_s <= max_backoff_s")
        if self.max_elapsed_s < 0:
            raise ValueError("max_elapsed_s must be at least 0")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first repeat)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return (rng or _RNG).uniform(0, ceiling)

    def wait_before_retry(
        self, tries: int, elapsed_s: float, rng: random.Random | None = None
    ) -> float | None:
        """After `tries` failed tries, the first `elapsed_s` seconds ago: the seconds to wait
        before the next, or None when the policy gives up (no tries left, or the wait would
        end past max_elapsed_s)."""
        if tries >= self.attempts:
            return None
        wait = self.backoff(tries, rng)
        if elapsed_s + wait > self.max_elapsed_s:
            return None
        return wait


_RNG: Final = random.Random()  # noqa: S311 - jitter, not a secret
DEFAULT_RETRY: Final = RetryPolicy()


def is_retryable(code: grpc.StatusCode | None, *, idempotent_submit: bool) -> bool:
    """True when a call that failed with `code` may be repeated (see the module)."""
    return code in (_SUBMIT if idempotent_submit else _ALWAYS)
