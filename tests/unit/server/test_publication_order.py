"""PublicationOrder: concurrent writes return in any order, yet each job's transitions are
published in the order their transactions committed, each exactly once."""

from __future__ import annotations

import uuid
from contextvars import ContextVar, copy_context
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.publication_order import PublicationOrder

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _transition(job_id: uuid.UUID, at: int) -> Transition:
    moment = EPOCH + timedelta(microseconds=at)
    return Transition(
        job_id, "q", JobStatus.PENDING, JobStatus.ASSIGNED, Reason.ASSIGNED, None, at, moment,
        None, moment,
    )  # fmt: skip


def test_a_write_alone_is_published_when_it_returns() -> None:
    published: list[list[Transition]] = []
    order = PublicationOrder(published.append)
    ticket = order.open()
    t = _transition(uuid.uuid4(), 1)
    order.close(ticket, [t], copy_context())
    assert published == [[t]]


def test_a_claim_returning_before_the_submit_it_found_waits_for_it() -> None:
    """The race this exists for: the submit commits, the dispatcher's claim (woken by NOTIFY)
    commits and returns while the submit's connection is still being given back."""
    published: list[Transition] = []
    order = PublicationOrder(published.extend)
    job = uuid.uuid4()
    submit = order.open()
    claim = order.open()
    submitted, assigned = _transition(job, 1), _transition(job, 2)
    order.close(claim, [assigned], copy_context())
    assert published == []
    order.close(submit, [submitted], copy_context())
    assert published == [submitted, assigned]


def test_a_failed_write_releases_those_waiting_for_it() -> None:
    published: list[Transition] = []
    order = PublicationOrder(published.extend)
    failing = order.open()
    other = order.open()
    t = _transition(uuid.uuid4(), 1)
    order.close(other, [t], copy_context())
    assert published == []
    order.close(failing, [], copy_context())
    assert published == [t]


@settings(max_examples=300)
@given(data=st.data(), jobs=st.integers(1, 4))
def test_each_jobs_transitions_come_out_in_commit_order_exactly_once(
    data: st.DataObject, jobs: int
) -> None:
    job_ids = [uuid.uuid4() for _ in range(jobs)]
    published: list[Transition] = []
    order = PublicationOrder(published.extend)
    clock = 0
    opened: list[int] = []  # tickets not yet committed
    committed: dict[int, list[Transition]] = {}  # tickets committed, not yet returned
    every: list[Transition] = []
    for _ in range(data.draw(st.integers(1, 40))):
        moves = ["open"]
        if opened:
            moves.append("commit")
        if committed:
            moves.append("return")
        move = data.draw(st.sampled_from(moves))
        if move == "open":
            opened.append(order.open())
        elif move == "commit":
            # The transaction runs now: it sees every earlier commit, so its now() (the
            # transitions' occurred_at) follows theirs for each job it touches.
            ticket = opened.pop(data.draw(st.integers(0, len(opened) - 1)))
            touched = data.draw(st.lists(st.sampled_from(job_ids), max_size=3))
            changes = []
            for job_id in touched:
                clock += 1
                changes.append(_transition(job_id, clock))
            committed[ticket] = changes
            every.extend(changes)
        else:
            ticket = data.draw(st.sampled_from(sorted(committed)))
            order.close(ticket, committed.pop(ticket), copy_context())
    for ticket in opened:  # writes that fail return nothing
        order.close(ticket, [], copy_context())
    for ticket in list(committed):
        order.close(ticket, committed.pop(ticket), copy_context())
    assert sorted(published, key=lambda t: t.attempt) == sorted(every, key=lambda t: t.attempt)
    assert len({t.attempt for t in published}) == len(published)
    for job_id in job_ids:
        times = [t.attempt for t in published if t.job_id == job_id]
        assert times == sorted(times), job_id


CALLER: ContextVar[str] = ContextVar("caller", default="")


def test_subscribers_run_in_the_context_of_the_write_that_made_the_changes() -> None:
    """The correlation id on a transition's log line is that of the RPC that made it, also
    when another write's return released it."""
    seen: list[tuple[str, int]] = []
    order = PublicationOrder(lambda ts: seen.extend((CALLER.get(), t.attempt) for t in ts))
    job = uuid.uuid4()
    first, second = order.open(), order.open()
    CALLER.set("claim")
    order.close(second, [_transition(job, 2)], copy_context())
    CALLER.set("submit")
    order.close(first, [_transition(job, 1)], copy_context())
    CALLER.set("")
    assert seen == [("submit", 1), ("claim", 2)]
