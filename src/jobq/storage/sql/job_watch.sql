-- Named queries of WatchJobs (server/job_watch.py): the state of the jobs a client waits for.

-- name: jobs_get_many
-- The jobs among the ids $1 (any status): where a watch starts, and which ids are unknown.
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, concurrency_key, progress, progress_message, progress_updated_at,
       cancel_requested_at, cancelled_by
FROM jobs WHERE job_id = ANY($1::uuid[])
  AND job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[]);

-- name: jobs_ended
-- The jobs among the ids $1 that have ended (DONE or DEAD_LETTERED): a watch's periodic look
-- for jobs another replica ended, whose transitions this replica's lifecycle never sees.
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, concurrency_key, progress, progress_message, progress_updated_at,
       cancel_requested_at, cancelled_by
FROM jobs WHERE job_id = ANY($1::uuid[]) AND status IN ('DONE', 'DEAD_LETTERED')
  AND job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[]);
