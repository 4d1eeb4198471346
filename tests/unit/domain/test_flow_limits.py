"""The pure rules of flow control: budgets, keys at their limits, the choice of candidates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from jobq.domain.flow_limits import (
    Candidate,
    FlowChange,
    FlowLimits,
    FlowState,
    Rate,
    budget,
    choose,
    parse_rate,
)

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _jobs(*keys: str | None) -> list[Candidate]:
    return [Candidate(uuid4(), key) for key in keys]


def test_an_ordinary_queue_is_not_limited_and_any_setting_makes_it_so() -> None:
    assert not FlowLimits().limited
    assert FlowLimits(paused=True).limited
    assert FlowLimits(max_running=1).limited
    assert FlowLimits(key_rate=Rate(1, 1.0)).limited


def test_a_paused_queue_has_no_budget() -> None:
    assert budget(FlowLimits(paused=True), FlowState(AT), 10).total == 0


def test_max_running_counts_every_held_job_whatever_its_key() -> None:
    limits = FlowLimits(max_running=5)
    state = FlowState(AT, held={None: 2, "a": 2})
    assert budget(limits, state, 10).total == 1
    assert budget(limits, FlowState(AT, held={"a": 7}), 10).total == 0  # over: never negative


def test_the_rate_window_limits_starts_and_says_when_a_start_frees() -> None:
    limits = FlowLimits(rate=Rate(10, 2.0))
    oldest = AT - timedelta(seconds=1.5)
    allowed = budget(limits, FlowState(AT, starts=8, oldest_start=oldest), 5)
    assert allowed.total == 2
    assert allowed.retry_at == oldest + timedelta(seconds=2)
    # Room for all that is wanted: nothing to look again for.
    assert budget(limits, FlowState(AT, starts=1, oldest_start=oldest), 5).retry_at is None


def test_keys_at_their_limits_are_full_and_each_key_gets_its_room_only() -> None:
    limits = FlowLimits(key_max_running=2)
    state = FlowState(AT, held={"a": 2, "b": 1, None: 9})
    allowed = budget(limits, state, 10)
    assert allowed.full_keys == {"a"}
    jobs = _jobs("b", "b", "c", None, "c", "c", "b")
    chosen = choose(limits, state, jobs, allowed.total)
    assert chosen == [jobs[0].job_id, jobs[2].job_id, jobs[3].job_id, jobs[4].job_id]


def test_key_rates_combine_with_key_concurrency_and_name_the_earliest_free_start() -> None:
    limits = FlowLimits(key_max_running=3, key_rate=Rate(2, 10.0))
    early = AT - timedelta(seconds=9)
    state = FlowState(AT, held={"a": 1}, key_starts={"a": (1, early), "b": (2, AT)})
    allowed = budget(limits, state, 10)
    assert allowed.full_keys == {"b"}
    assert allowed.retry_at == AT + timedelta(seconds=10)
    jobs = _jobs("a", "a", "a")
    assert choose(limits, state, jobs, allowed.total) == [jobs[0].job_id]  # rate: 1 more


def test_the_total_caps_the_choice_in_claim_order() -> None:
    jobs = _jobs(None, None, None)
    assert choose(FlowLimits(max_running=2), FlowState(AT), jobs, 2) == [
        jobs[0].job_id,
        jobs[1].job_id,
    ]


def test_at_most_one_suspect_and_none_while_the_worker_holds_one() -> None:
    jobs = [Candidate(uuid4(), None, True), Candidate(uuid4(), None, True), *_jobs(None)]
    limits = FlowLimits(max_running=10)
    assert choose(limits, FlowState(AT), jobs, 10) == [jobs[0].job_id, jobs[2].job_id]
    holding = FlowState(AT, holds_suspect=True)
    assert choose(limits, holding, jobs, 10) == [jobs[2].job_id]


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/1s", Rate(10, 1.0)),
        ("5/s", Rate(5, 1.0)),
        ("100/5m", Rate(100, 300.0)),
        ("3/500ms", Rate(3, 0.5)),
        ("0", Rate(0, 1.0)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "x/1s", "10/1", "10/2y", "-1/1s", "10/0.1ms", "10/2d"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|period"):
        parse_rate(text)


def test_a_change_sets_clears_and_leaves() -> None:
    limits = FlowLimits(max_running=3, rate=Rate(1, 1.0))
    changed = FlowChange(paused=True, max_running=0, key_rate=Rate(2, 60.0)).applied_to(limits)
    assert changed == FlowLimits(paused=True, rate=Rate(1, 1.0), key_rate=Rate(2, 60.0))
    assert FlowChange(rate=Rate(0, 1.0)).applied_to(limits).rate is None
    assert FlowChange().empty
    assert str(Rate(100, 300.0)) == "100/5m"
    assert str(Rate(3, 0.5)) == "3/500ms"
