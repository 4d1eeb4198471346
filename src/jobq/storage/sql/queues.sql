-- Named queries over queues.

-- name: queue_create
-- Create a queue; returns nothing when the name is taken.
INSERT INTO queues (name, max_retries, ttl_seconds, max_interruptions) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions, paused,
       max_running, key_max_running, rate_limit, rate_period_ms, key_rate_limit, key_rate_period_ms;

-- name: queue_get
SELECT name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions, paused,
       max_running, key_max_running, rate_limit, rate_period_ms, key_rate_limit, key_rate_period_ms
FROM queues WHERE name = $1;

-- name: queue_list
SELECT name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions, paused,
       max_running, key_max_running, rate_limit, rate_period_ms, key_rate_limit, key_rate_period_ms
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

-- name: queue_set_flow
-- Change a queue's flow settings (FlowChange): for each, $n true sets it to the next parameter
-- (NULL removes a limit), false leaves it. The NOTIFY (at commit) tells every replica's
-- dispatcher to read the queue's settings again: a resumed queue starts at once everywhere.
-- $1 name, $2 paused (NULL: unchanged), $3/$4 max_running, $5/$6 key_max_running, $7/$8/$9
-- rate_limit and rate_period_ms, $10/$11/$12 key_rate_limit and key_rate_period_ms.
UPDATE queues SET
    paused = COALESCE($2::boolean, paused),
    max_running = CASE WHEN $3::boolean THEN $4::integer ELSE max_running END,
    key_max_running = CASE WHEN $5::boolean THEN $6::integer ELSE key_max_running END,
    rate_limit = CASE WHEN $7::boolean THEN $8::integer ELSE rate_limit END,
    rate_period_ms = CASE WHEN $7::boolean THEN $9::integer ELSE rate_period_ms END,
    key_rate_limit = CASE WHEN $10::boolean THEN $11::integer ELSE key_rate_limit END,
    key_rate_period_ms = CASE WHEN $10::boolean THEN $12::integer ELSE key_rate_period_ms END,
    updated_at = now()
WHERE name = $1
RETURNING name, max_retries, ttl_seconds, created_at, updated_at, max_interruptions, paused,
          max_running, key_max_running, rate_limit, rate_period_ms, key_rate_limit,
          key_rate_period_ms,
          pg_notify(CASE current_schema() WHEN 'public' THEN 'jobq_jobs'
                    ELSE 'jobq_jobs_' || current_schema() END, 'queues') AS notified;

-- name: queues_flow_limited
-- The queues the ordinary claim leaves alone (paused or limited), for the dispatcher's cache.
SELECT name FROM queues WHERE flow_limited;
