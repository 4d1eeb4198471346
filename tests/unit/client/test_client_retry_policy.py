"""The SDK's retry policy: how many tries, how long, and that its default outlasts a failover."""

from __future__ import annotations

import random

import pytest

from jobq.client import RetryPolicy
from jobq.client.retry import DEFAULT_RETRY

FAILOVER_S = 11.0
"""The longest PostgreSQL failover measured under Patroni, the primary's death to the first
acknowledged write (tests/fault/test_patroni_failover.py)."""


def _give_up_after(policy: RetryPolicy, rng: random.Random) -> tuple[int, float]:
    """Tries made and seconds waited before `policy` gives up, when every try fails at once."""
    tries, elapsed = 0, 0.0
    while True:
        tries += 1
        wait = policy.wait_before_retry(tries, elapsed, rng)
        if wait is None:
            return tries, elapsed
        elapsed += wait


def test_the_default_keeps_trying_longer_than_a_failover_and_not_much_longer() -> None:
    spans = [_give_up_after(DEFAULT_RETRY, random.Random(seed))[1] for seed in range(2000)]
    assert min(spans) > FAILOVER_S
    assert max(spans) <= DEFAULT_RETRY.max_elapsed_s


def test_no_wait_would_end_past_the_time_budget() -> None:
    policy = RetryPolicy(attempts=1000, initial_backoff_s=1.0, max_backoff_s=1.0, max_elapsed_s=2.5)
    tries, elapsed = _give_up_after(policy, random.Random(1))
    assert elapsed <= 2.5
    assert policy.wait_before_retry(tries, 2.5) is None


def test_the_tries_run_out_before_the_budget() -> None:
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0)
    assert _give_up_after(policy, random.Random(1)) == (3, 0.0)
    assert RetryPolicy(attempts=1).wait_before_retry(1, 0.0) is None


def test_the_waits_grow_to_the_ceiling() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    policy = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=2.0, multiplier=2.0)
    waits = [policy.wait_before_retry(n, 0.0, Top()) for n in range(1, 8)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts"),
        ({"max_elapsed_s": -1.0}, "max_elapsed_s"),
        ({"initial_backoff_s": 3.0, "max_backoff_s": 2.0}, "backoff"),
    ],
)
def test_a_bad_policy_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
