"""What one write hands to the lifecycle stream: a claim of a job that a transactional
enqueue wrote and no server announced yet stands for its SUBMITTED, then its ASSIGNED."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, Job, NewJob, OperatorChange
from jobq.domain.states import JobStatus, Reason
from jobq.server.lifecycle import Changes

CREATED = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CLAIMED = CREATED + timedelta(seconds=2)


def claimed_job() -> Job:
    return Job(
        job_id=uuid7(),
        queue_name="mail",
        payload=b"{}",
        status=JobStatus.ASSIGNED,
        priority=0,
        max_retries=3,
        retry_count=0,
        attempt=1,
        worker_id=uuid.uuid4(),
        result=None,
        error_message=None,
        not_before=None,
        created_at=CREATED,
        started_at=None,
        completed_at=None,
        updated_at=CLAIMED,
    )


def test_an_unannounced_claim_is_submitted_then_assigned() -> None:
    announced, unannounced = claimed_job(), claimed_job()
    changes = Changes()
    changes.assigned(
        [
            Assignment(announced, None, uuid.uuid4()),
            Assignment(unannounced, None, uuid.uuid4(), True),
        ]
    )
    seen = [
        (t.job_id, t.reason, t.from_status, t.to_status, t.occurred_at) for t in changes.transitions
    ]
    assert seen == [
        (announced.job_id, Reason.ASSIGNED, JobStatus.PENDING, JobStatus.ASSIGNED, CLAIMED),
        (unannounced.job_id, Reason.SUBMITTED, None, JobStatus.PENDING, CREATED),
        (unannounced.job_id, Reason.ASSIGNED, JobStatus.PENDING, JobStatus.ASSIGNED, CLAIMED),
    ]
    assert changes.transitions[2].worker_id == unannounced.worker_id
    assert changes.transitions[1].worker_id is None


def test_submits_are_published_for_the_jobs_inserted_only() -> None:
    inserted, held = NewJob(uuid7(), "mail", b"{}"), NewJob(uuid7(), "mail", b"{}")
    changes = Changes()
    changes.submitted([inserted, held], [(inserted.job_id, CREATED)])
    [t] = changes.transitions
    assert (t.job_id, t.reason, t.created_at, t.occurred_at) == (
        inserted.job_id,
        Reason.SUBMITTED,
        CREATED,
        CREATED,
    )


def test_an_unannounced_cancel_is_submitted_then_cancelled() -> None:
    job = claimed_job()
    changes = Changes()
    changes.operator_changed(
        OperatorChange(job, JobStatus.PENDING, unannounced=True), Reason.CANCELLED
    )
    changes.operator_changed(OperatorChange(job, JobStatus.DEAD_LETTERED), Reason.MANUAL_RETRY)
    assert [(t.reason, t.from_status) for t in changes.transitions] == [
        (Reason.SUBMITTED, None),
        (Reason.CANCELLED, JobStatus.PENDING),
        (Reason.MANUAL_RETRY, JobStatus.DEAD_LETTERED),
    ]
