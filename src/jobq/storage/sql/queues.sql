-- Named queries over queues.

-- name: queue_create
-- Create a queue; returns nothing when the name is taken.
INSERT INTO queues (name, max_retries, ttl_seconds, max_interruptions) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions;

-- name: queue_get
SELECT name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions
FROM queues WHERE name = $1;

-- name: queue_list
SELECT name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions
FROM queues ORDER BY name;

-- name: queue_lock
-- Lock a queue row so that the checks before its deletion and the deletion see the same state:
-- a submit to it (its foreign key takes a KEY SHARE lock on the row) waits until we commit.
SELECT name FROM queues WHERE name = $1 FOR UPDATE;

-- name: queue_job_counts
-- How many jobs a queue holds, and how many of them have not finished.
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE status IN ('PENDING', 'ASSIGNED', 'RUNNING', 'FAILED', 'WAITING'))
           AS unfinished
FROM jobs WHERE queue_name = $1;

-- name: queue_live_workers
-- Live (ONLINE or DRAINING) workers that serve a queue, as the database knows them, so that
-- every jq-server replica sees workers connected to the others.
SELECT worker_id FROM workers
WHERE status IN ('ONLINE', 'DRAINING') AND $1 = ANY (queues)
ORDER BY worker_id;

-- name: queue_delete
-- Delete a queue with its jobs (ON DELETE CASCADE from queues would too) and their events
-- (job_events has no reference to jobs since V16: deleted here, by the job_id index). Returns
-- the number of jobs deleted.
WITH deleted_jobs AS (
    DELETE FROM jobs WHERE queue_name = $1 RETURNING job_id
), deleted_events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT job_id FROM deleted_jobs)
), deleted_edges AS (
    -- their dependency edges (V20); a job of another queue that waited for one of them is
    -- dead-lettered by the resolver's sweep (a prerequisite that no longer exists)
    DELETE FROM job_dependencies WHERE job_id IN (SELECT job_id FROM deleted_jobs)
), deleted_queue AS (
    DELETE FROM queues WHERE name = $1 RETURNING 1
)
SELECT (SELECT count(*) FROM deleted_jobs) AS jobs, (SELECT count(*) FROM deleted_queue) AS queues;

-- name: queue_stats
-- Counts per status, the oldest pending job's age, and the retries and interruptions spent, for
-- one queue.
SELECT status, count(*) AS n, sum(retry_count) AS retries, sum(interruptions) AS interruptions,
       EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'PENDING')) AS oldest_s
FROM jobs WHERE queue_name = $1
GROUP BY status;
