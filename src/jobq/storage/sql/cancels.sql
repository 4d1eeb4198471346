-- Named queries of cancels and progress reports (issue 18, V18). A RUNNING job cannot be ended
-- by CancelJob itself (a worker runs it): the cancel is requested here and the job ends when
-- its worker stops it (jobs_finish_cancelled), or when its attempt ends any way that would run
-- it again (jobs_apply_failure, jobs_release and jobs_interrupt in jobs.sql end it CANCELLED
-- instead). A job that succeeds first ends DONE (jobs_complete does not look).

-- name: job_cancel
-- CancelJob by caller $2 (its label): PENDING, ASSIGNED or WAITING → DEAD_LETTERED (CANCELLED)
-- at once (a cancelled job's dependants are then dead-lettered by the resolver: has_dependants
-- tells the caller to wake it);
-- RUNNING → a cancel request (cancel_requested_at, cancelled_by, a RUNNING → RUNNING event
-- CANCEL_REQUESTED the first time only) and a notification `cancel:<worker>:<job>:<attempt>`
-- on the submit channel, which every replica hears at commit and the one holding the
-- worker's stream passes on (server/cancels.py). Asking again repeats the notification (a
-- worker that missed it hears it again) and changes nothing else: the first canceller stays
-- recorded. Any other status: no row (the caller says why). The sub-select locks the row and
-- yields its status before the update, which the event (and the published transition) needs
-- as from_status; `requested` tells the two outcomes apart. $3: the job's shard (V25).
WITH old AS MATERIALIZED (
    SELECT job_id, status, cancel_requested_at FROM jobs
    WHERE job_id = $1 AND shard = $3::smallint
    FOR UPDATE
), ended AS (
    UPDATE jobs j
    SET status = 'DEAD_LETTERED', completed_at = now(), updated_at = now(),
        error_message = 'cancelled by ' || $2::text, cancelled_by = $2::text
    FROM old
    WHERE j.job_id = old.job_id AND old.status IN ('PENDING', 'ASSIGNED', 'WAITING')
      AND j.shard = $3::smallint
    RETURNING j.*, old.status AS from_status
), requested AS (
    UPDATE jobs j
    SET cancel_requested_at = COALESCE(j.cancel_requested_at, now()),
        cancelled_by = COALESCE(j.cancelled_by, $2::text), updated_at = now()
    FROM old
    WHERE j.job_id = old.job_id AND old.status = 'RUNNING' AND j.shard = $3::smallint
    RETURNING j.*, old.status AS from_status, old.cancel_requested_at IS NULL AS first_request
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            claim_id, shard)
    SELECT job_id, from_status, 'DEAD_LETTERED'::job_status, worker_id, 'CANCELLED', NULL,
           attempt, claim_id, $3::smallint
    FROM ended
    UNION ALL
    SELECT job_id, 'RUNNING'::job_status, 'RUNNING'::job_status, worker_id, 'CANCEL_REQUESTED', 'by ' || $2::text,
           attempt, claim_id, $3::smallint
    FROM requested WHERE first_request
), announced AS (
    -- A job a transactional enqueue wrote and no server announced yet (V14): taken out here,
    -- so its SUBMITTED is published before its cancellation (see jobs_claim).
    DELETE FROM enqueued_jobs e USING ended u WHERE e.job_id = u.job_id AND e.shard = $3::smallint

    RETURNING e.job_id
)
SELECT job_id, queue_name, payload, status, priority, max_retries, retry_count, attempt, worker_id,
       result, error_message, not_before, created_at, started_at, completed_at, updated_at,
       interruptions, progress, progress_message, progress_updated_at, cancel_requested_at,
       cancelled_by, from_status, EXISTS (SELECT FROM announced) AS unannounced,
       false AS requested, concurrency_key, schedule_name, has_dependants
FROM ended
UNION ALL
SELECT r.job_id, r.queue_name, r.payload, r.status, r.priority, r.max_retries, r.retry_count,
       r.attempt, r.worker_id, r.result, r.error_message, r.not_before, r.created_at,
       r.started_at, r.completed_at, r.updated_at, r.interruptions, r.progress,
       r.progress_message, r.progress_updated_at, r.cancel_requested_at, r.cancelled_by,
       r.from_status, false, true AS requested, r.concurrency_key, r.schedule_name,
       r.has_dependants
FROM requested r,
     LATERAL (SELECT pg_notify(
         CASE current_schema() WHEN 'public' THEN 'jobq_jobs' ELSE 'jobq_jobs_' || current_schema() END,
         format('cancel:%s:%s:%s', r.worker_id, r.job_id, r.attempt))) AS n;

-- name: jobs_finish_cancelled
-- Workers' JOB_OUTCOME_CANCELLED reports for current claims (ids $1, attempts $2, workers $3,
-- claim ids $4, the worker's account of the stop $5): RUNNING → DEAD_LETTERED (CANCELLED), for
-- jobs whose cancel was requested only (a worker cannot cancel a job nobody asked to stop; its
-- report is refused as stale). No retry is used. Rows are found by primary key and locked in
-- the MATERIALIZED sub-select, as the other reports in jobs.sql are. $6: the shard of every
-- job of the batch (V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status, j.cancel_requested_at, r.detail
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[], $5::text[])
        AS r(job_id, attempt, worker_id, claim_id, detail)
    JOIN jobs j ON j.job_id = r.job_id AND j.attempt = r.attempt AND j.worker_id = r.worker_id
               AND j.claim_id = r.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $6::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    FOR UPDATE OF j
), cancelled AS (
    UPDATE jobs j
    SET status = 'DEAD_LETTERED', completed_at = now(), updated_at = now(),
        error_message = 'cancelled by ' || j.cancelled_by
    FROM old o
    WHERE j.job_id = o.job_id AND o.status = 'RUNNING' AND o.cancel_requested_at IS NOT NULL
      AND j.shard = $6::smallint
    RETURNING j.job_id, j.attempt, j.worker_id, j.claim_id, j.queue_name, j.created_at,
              j.started_at, o.status AS from_status, j.status AS to_status,
              'CANCELLED' AS reason, statement_timestamp() AS occurred_at, o.detail
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, detail, attempt,
                            claim_id, shard)
    SELECT job_id, from_status, to_status, worker_id, reason, NULLIF(detail, ''), attempt,
           claim_id, $6::smallint

    FROM cancelled
)
SELECT job_id, attempt, worker_id, claim_id, queue_name, created_at, started_at, from_status,
       to_status, reason, occurred_at
FROM cancelled;

-- name: jobs_cancel_requested_for_worker
-- The RUNNING attempts of worker $1 whose cancel was requested: a heartbeat's answer repeats
-- them (HeartbeatResponse.cancels). One probe of held_jobs_cancel_idx (V22), which is empty
-- unless a cancel is under way; jobs decides (status, worker and request checked on its row).
-- $2: the shard (V25; the caller asks each shard it serves).
SELECT j.job_id, j.attempt
FROM held_jobs h JOIN jobs j ON j.shard = h.shard AND j.job_id = h.job_id
WHERE h.shard = $2::smallint AND h.worker_id = $1 AND h.cancel_requested

  AND j.worker_id = $1 AND j.cancel_requested_at IS NOT NULL AND j.status = 'RUNNING';

-- name: jobs_record_progress
-- Workers' progress reports (ids $1, attempts $2, workers $3, claim ids $4, fractions $5,
-- messages $6, '' for none): the latest one replaces the job's progress, for RUNNING attempts
-- still current only (a stale or finished attempt's report changes nothing). Not a state
-- change: no job_events row, updated_at untouched. Returns the (job, attempt) applied. Found by
-- primary key, as the reports are (jobs.sql's head says why the status is checked outside the
-- sub-select). $7: the shard of every job of the batch (V25).
WITH old AS MATERIALIZED (
    SELECT j.job_id, j.status, p.fraction, p.message
    FROM unnest($1::uuid[], $2::integer[], $3::uuid[], $4::uuid[], $5::float8[], $6::text[])
        AS p(job_id, attempt, worker_id, claim_id, fraction, message)
    JOIN jobs j ON j.job_id = p.job_id AND j.attempt = p.attempt AND j.worker_id = p.worker_id
               AND j.claim_id = p.claim_id
    WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $7::smallint
      AND j.job_id BETWEEN jobq_ids_low($1::uuid[]) AND jobq_ids_high($1::uuid[])
    ORDER BY j.job_id
    FOR UPDATE OF j
)
UPDATE jobs j
SET progress = o.fraction, progress_message = NULLIF(o.message, ''),
    progress_updated_at = statement_timestamp()
FROM old o
WHERE j.job_id = o.job_id AND o.status = 'RUNNING' AND j.shard = $7::smallint
RETURNING j.job_id, j.attempt;
