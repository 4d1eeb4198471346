"""BatchPlan: a bad job in a batch fails alone, a too-large batch is split, other errors are
every job's of the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.client.batch_plan import BatchPlan, Submitted, bad_job_index, server_batch_limit
from jobq.client.errors import CallFailed, ClientError

Server = Callable[[Sequence[int]], list[str]]


def drive(count: int, max_batch: int, server: Server) -> tuple[list[object], list[int]]:
    """Run a plan against a fake server; returns the outcomes and the batch sizes sent."""
    plan = BatchPlan(count, max_batch)
    sizes = []
    while (batch := plan.next_batch()) is not None:
        sizes.append(len(batch))
        try:
            ids = server(batch)
        except CallFailed as exc:
            plan.failed(batch, exc)
        else:
            plan.succeeded(batch, ids, [])
    return list(plan.results()), sizes


def refusing(bad: set[int], limit: int = 10_000) -> Server:
    """A server that refuses (all or nothing) a batch holding a job of `bad`, naming its index."""

    def server(batch: Sequence[int]) -> list[str]:
        if len(batch) > limit:
            raise CallFailed("INVALID_ARGUMENT", f"a batch holds at most {limit} jobs, got 9")
        for position, index in enumerate(batch):
            if index in bad:
                code = "NOT_FOUND" if index % 2 else "INVALID_ARGUMENT"
                raise CallFailed(code, f"job {position}: bad job {index}")
        return [f"id-{index}" for index in batch]

    return server


def test_all_good_jobs_go_in_batches_of_at_most_max_batch() -> None:
    outcomes, sizes = drive(25, 10, refusing(set()))
    assert sizes == [10, 10, 5]
    assert outcomes == [Submitted(f"id-{i}") for i in range(25)]


def test_a_bad_job_fails_alone_and_the_rest_are_sent_again() -> None:
    outcomes, _ = drive(6, 10, refusing({2, 5}))
    assert [o.job_id for o in outcomes if isinstance(o, Submitted)] == [
        "id-0",
        "id-1",
        "id-3",
        "id-4",
    ]
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, CallFailed)}
    assert set(errors) == {2, 5}
    assert errors[2].details == "bad job 2"  # the "job N:" of the batch is gone
    assert errors[5].code == "NOT_FOUND"


def test_the_server_limit_named_in_an_error_splits_the_batch() -> None:
    outcomes, sizes = drive(7, 10, refusing(set(), limit=3))
    assert sizes == [7, 3, 3, 1]
    assert all(isinstance(o, Submitted) for o in outcomes)


def test_any_other_error_is_every_jobs_of_that_batch() -> None:
    calls = []

    def server(batch: Sequence[int]) -> list[str]:
        calls.append(list(batch))
        if len(calls) == 1:
            raise CallFailed("UNAVAILABLE", "down")
        return [f"id-{i}" for i in batch]

    outcomes, _ = drive(4, 2, server)
    assert [type(o) for o in outcomes] == [CallFailed, CallFailed, Submitted, Submitted]


def test_existing_flags_are_kept_and_a_short_answer_is_an_error() -> None:
    plan = BatchPlan(3, 3)
    batch = plan.next_batch()
    assert batch == [0, 1, 2]
    plan.succeeded(batch, ["a", "b", "c"], [False, True, False])
    assert plan.results()[1] == Submitted("b", existing=True)
    short = BatchPlan(2, 2)
    plan_batch = short.next_batch()
    assert plan_batch is not None
    short.succeeded(plan_batch, ["a"], [])
    assert all(isinstance(o, CallFailed) for o in short.results())


def test_error_parsing() -> None:
    assert bad_job_index(CallFailed("INVALID_ARGUMENT", "job 12: priority")) == (12, "priority")
    assert bad_job_index(CallFailed("PERMISSION_DENIED", "job 1: x")) is None
    assert bad_job_index(CallFailed("INVALID_ARGUMENT", "a batch needs a job")) is None
    limit = CallFailed("INVALID_ARGUMENT", "a batch holds at most 50 jobs, got 60")
    assert server_batch_limit(limit) == 50
    with pytest.raises(ValueError, match="max_batch"):
        BatchPlan(1, 0)


@given(
    count=st.integers(0, 60),
    max_batch=st.integers(1, 15),
    limit=st.integers(1, 20),
    bad=st.sets(st.integers(0, 59)),
)
def test_every_job_is_settled_once_and_only_bad_ones_fail(
    count: int, max_batch: int, limit: int, bad: set[int]
) -> None:
    outcomes, _ = drive(count, max_batch, refusing(bad, limit))
    assert len(outcomes) == count
    for index, result in enumerate(outcomes):
        if index in bad:
            assert isinstance(result, ClientError)
        else:
            assert result == Submitted(f"id-{index}")
