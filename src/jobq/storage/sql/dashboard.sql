-- Named queries of the dashboard's overview (server/web/history.py samples them every 5 s).

-- name: dashboard_activity
-- Job events with an id above $1, counted by kind, and the largest id read (0: none; $1 when
-- there are none above it). One range scan of job_events' primary key from $1: its cost grows
-- with the events since the last sample (about 4 a job: 10,000 jobs/s make 200,000 rows per
-- 5 s sample), never with the table. "failed" counts failed attempts (to FAILED) and jobs
-- dead-lettered without a failed attempt first (cancelled, TTL, dependency failed), so a last
-- attempt's failure is counted once, not again as its dead letter.
SELECT coalesce(max(id), $1::bigint)::bigint AS last_id,
       count(*) FILTER (WHERE reason = 'SUBMITTED') AS submitted,
       count(*) FILTER (WHERE to_status = 'RUNNING' AND reason = 'STARTED') AS started,
       count(*) FILTER (WHERE to_status = 'DONE') AS finished,
       count(*) FILTER (WHERE to_status = 'FAILED'
                        OR (to_status = 'DEAD_LETTERED'
                            AND from_status IS DISTINCT FROM 'FAILED')) AS failed
FROM job_events
WHERE id > $1::bigint;

-- name: dashboard_head
-- The largest job_events id now (0: none): where the first sample starts counting from.
SELECT coalesce(max(id), 0)::bigint FROM job_events;

-- name: dashboard_pending
-- PENDING jobs over every queue, counted up to $1: a scan of ready_jobs (V22, one row per
-- PENDING job), so its cost is the backlog's size (capped by $1), never the whole jobs table
-- with its finished history.
SELECT count(*) FROM (SELECT 1 FROM ready_jobs LIMIT $1::bigint) backlog;
