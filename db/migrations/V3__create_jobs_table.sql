-- Jobs: the unit of work and its current state (the history is in job_events).
CREATE TYPE job_status AS ENUM ('PENDING', 'ASSIGNED', 'RUNNING', 'DONE', 'FAILED', 'DEAD_LETTERED');

CREATE TABLE jobs (
    job_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_name    text        NOT NULL REFERENCES queues (name) ON DELETE CASCADE,
    payload       bytea       NOT NULL DEFAULT ''::bytea,
    status        job_status  NOT NULL DEFAULT 'PENDING',
    priority      smallint    NOT NULL DEFAULT 0 CONSTRAINT jobs_priority_range CHECK (priority BETWEEN 0 AND 9),
    max_retries   smallint    NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    retry_count   smallint    NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    worker_id     uuid        NULL REFERENCES workers (worker_id) ON DELETE SET NULL,
    result        bytea       NULL,
    error_message text        NULL,
    not_before    timestamptz NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NULL,
    completed_at  timestamptz NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- A finished job has a completion time and an unfinished one has none (River's
    -- finalized_or_finalized_at_null): readers can trust completed_at without a status check.
    CONSTRAINT jobs_completed_at_iff_terminal CHECK (
        (status IN ('DONE', 'DEAD_LETTERED')) = (completed_at IS NOT NULL)
    )
);

-- The dispatcher's claim scans PENDING jobs in priority DESC, created_at order. A partial index
-- holds only the PENDING rows, so it stays small however many finished jobs the table keeps.
CREATE INDEX jobs_pending_claim_idx ON jobs (priority DESC, created_at) WHERE status = 'PENDING';
-- Jobs held by a worker, for crash recovery; finished jobs keep their worker_id for the record
-- but are not indexed, so the index does not grow with history.
CREATE INDEX jobs_worker_id_idx ON jobs (worker_id) WHERE status IN ('ASSIGNED', 'RUNNING');
-- Listing and counting by queue and status (ListJobs, GetQueueStats, DeleteQueue).
CREATE INDEX jobs_queue_status_idx ON jobs (queue_name, status);
-- Delayed jobs and time-based reapers.
CREATE INDEX jobs_status_not_before_idx ON jobs (status, not_before);
