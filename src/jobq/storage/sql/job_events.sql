-- Named queries over job_events, the append-only history of job state changes.

-- name: job_events_list
-- A job's transitions in the order they happened.
SELECT e.id, e.job_id, j.queue_name, e.from_status, e.to_status, e.worker_id, e.reason, e.detail,
       e.attempt, e.occurred_at
FROM job_events e JOIN jobs j ON j.job_id = e.job_id
WHERE e.job_id = $1
ORDER BY e.id;

-- name: job_events_head
-- The largest event id visible now (0: none): where a reader of ListJobEvents may go on from
-- once it has read every matching event up to it. max(id) reads one entry of the primary key.
SELECT coalesce(max(id), 0)::bigint FROM job_events;

-- name: job_events_after
-- Events with an id above $1, oldest first, at most $2, of every job or of queue $3 (NULL:
-- every queue). Walks the primary key from $1 and joins each row's job (its queue), stopping
-- at the $2-th match.
SELECT e.id, e.job_id, j.queue_name, e.from_status, e.to_status, e.worker_id, e.reason, e.detail,
       e.attempt, e.occurred_at
FROM job_events e JOIN jobs j ON j.job_id = e.job_id
WHERE e.id > $1 AND ($3::text IS NULL OR j.queue_name = $3)
ORDER BY e.id
LIMIT $2;

-- name: job_events_newest
-- The last $2 events with an id above $1, of every job or of queue $3 (NULL: every queue),
-- oldest first: the primary key walked backwards from the end, then the page put back in order.
SELECT * FROM (
    SELECT e.id, e.job_id, j.queue_name, e.from_status, e.to_status, e.worker_id, e.reason,
           e.detail, e.attempt, e.occurred_at
    FROM job_events e JOIN jobs j ON j.job_id = e.job_id
    WHERE e.id > $1 AND ($3::text IS NULL OR j.queue_name = $3)
    ORDER BY e.id DESC
    LIMIT $2
) newest
ORDER BY id;

-- name: job_events_of_job
-- Job $4's events with an id above $1 (and of queue $3, NULL: any), oldest first, at most $2:
-- the first $2 or, when $5, the last $2. Found through job_events_job_id_idx, not by walking
-- the primary key (a job's few events may be spread over millions of others); a job has few
-- events, so sorting them either way is cheap and one statement serves both directions.
SELECT * FROM (
    SELECT e.id, e.job_id, j.queue_name, e.from_status, e.to_status, e.worker_id, e.reason,
           e.detail, e.attempt, e.occurred_at
    FROM job_events e JOIN jobs j ON j.job_id = e.job_id
    WHERE e.job_id = $4 AND e.id > $1 AND ($3::text IS NULL OR j.queue_name = $3)
    ORDER BY CASE WHEN $5::boolean THEN -e.id ELSE e.id END
    LIMIT $2
) page
ORDER BY id;
