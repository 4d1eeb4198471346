-- Named queries over job_events, the append-only history of job state changes.

-- name: job_events_list
-- A job's transitions in the order they happened.
SELECT e.id, e.job_id, j.queue_name, e.from_status, e.to_status, e.worker_id, e.reason, e.detail,
       e.attempt, e.occurred_at
FROM job_events e JOIN jobs j ON j.job_id = e.job_id
WHERE e.job_id = $1
ORDER BY e.id;
