-- The limited claim (issue 18, db/migrations/V17): claims of a paused or limited queue, one
-- at a time per queue on every replica. In one transaction:
--   queue_flow_lock        the queue's row FOR NO KEY UPDATE, and its settings;
--   queue_flow_state       what is held and what started, counted after the lock is granted;
--   queue_flow_candidates  the queue's first waiting jobs in claim order, keys at their limits
--                          skipped;
--   jobs_claim_chosen      the chosen ones (jobq.domain.flow_limits.choose) claimed.
-- The lock is a statement of its own: READ COMMITTED gives each statement a new snapshot, so
-- the counts, read after the lock is granted, see every claim of the queue that held it before
-- (one statement that locked and counted would count from a snapshot taken before its wait).
-- NO KEY UPDATE does not conflict with the KEY SHARE lock that a submit's foreign key takes on
-- the queue's row, so submits do not wait for limited claims. The ordinary claim and the
-- assignment at submit skip flow-limited queues (queues.flow_limited), so nothing else assigns
-- their jobs; a limit set while an ordinary claim of the queue is running applies from the
-- next claim.

-- name: queue_flow_lock
-- Lock a queue's row for a limited claim and read its flow settings; no row: no such queue.
SELECT paused, max_running, key_max_running, rate_limit, rate_period_ms, key_rate_limit,
       key_rate_period_ms
FROM queues WHERE name = $1
FOR NO KEY UPDATE;

-- name: queue_flow_state
-- Under the queue's lock: the database's clock now (after the lock was granted), the queue's
-- held jobs per key (held_jobs_queue_key_idx, V22), its starts in the last $2 ms and per key
-- in the last $3 ms (queue_starts; NULL: no such rate) with the oldest of each, and whether
-- worker $4 holds a suspect (held_jobs_suspect_idx). One row per kind and key. held_jobs has
-- a row for every ASSIGNED or RUNNING job, written by the statement (trigger) that made it so,
-- so the counts are those of jobs. $5: the shard claimed from (V25): the counts are that
-- shard's, which are the queue's while there is one shard (docs/scaling.md, F10).
WITH now_ AS MATERIALIZED (SELECT clock_timestamp() AS at)
SELECT 'clock' AS kind, NULL::text AS key, 0::bigint AS n, at AS oldest FROM now_
UNION ALL
SELECT 'held', h.concurrency_key, count(*), NULL
FROM held_jobs h
WHERE h.shard = $5::smallint AND h.queue_name = $1
GROUP BY h.concurrency_key
UNION ALL
SELECT 'started', NULL, count(*), min(s.started_at)
FROM queue_starts s, now_
WHERE $2::integer IS NOT NULL AND s.queue_name = $1 AND s.shard = $5::smallint
  AND s.started_at > now_.at - $2::integer * interval '1 millisecond'
UNION ALL
SELECT 'key_started', s.concurrency_key, count(*), min(s.started_at)
FROM queue_starts s, now_
WHERE $3::integer IS NOT NULL AND s.queue_name = $1 AND s.concurrency_key IS NOT NULL
  AND s.shard = $5::smallint

  AND s.started_at > now_.at - $3::integer * interval '1 millisecond'
GROUP BY s.concurrency_key
UNION ALL
SELECT 'suspect_held', NULL, count(*), NULL
FROM held_jobs h
WHERE h.shard = $5::smallint AND h.worker_id = $4 AND h.suspect;

-- name: queue_flow_candidates
-- The first $4 waiting jobs of queue $1 due at $2, in claim order (ready_jobs_claim_idx, V22,
-- suspects included: the caller takes at most one), except those of the keys $3 at their
-- limits. Not locked: the queue's lock keeps other limited claims out, and jobs_claim_chosen
-- claims a job only if it is still PENDING (it locks the jobs rows first; their trigger then
-- deletes the ready rows, the order every writer but the ordinary claim keeps). $5: the shard
-- claimed from (V25).
SELECT r.job_id, r.concurrency_key, r.suspect
FROM ready_jobs r
WHERE r.shard = $5::smallint AND r.queue_name = $1

  AND (r.not_before IS NULL OR r.not_before <= $2)
  AND (r.concurrency_key IS NULL OR r.concurrency_key <> ALL ($3::text[]))
ORDER BY r.priority DESC, r.created_at, r.job_id
LIMIT $4;

-- name: jobs_claim_chosen
-- Claim the jobs $2 of queue $5 for worker $1 (of incarnation $3) as jobs_claim does, those
-- still PENDING, if the worker is ONLINE as that process (the holder, as in jobs_claim).
-- assigned_at, updated_at and the events' occurred_at are clock_timestamp(): taken while the
-- rows are updated, after anything that made them PENDING committed (the lifecycle orders a
-- job's changes by that time), and after the counts of queue_flow_state, so that a window
-- ending at a recorded start never holds more than the limit. With $4 (the queue has a rate),
-- each claimed job's start is recorded in queue_starts, and starts older than $6 ms (the
-- queue's longest period) are deleted. $7: the shard claimed from (V25): jobs, events, outbox
-- and starts of that shard only; the holder's workers row is on the worker's home shard (see
-- jobs_claim).
WITH holder AS MATERIALIZED (
    SELECT w.worker_id
    FROM workers w
    WHERE w.worker_id = $1 AND w.status = 'ONLINE' AND w.incarnation = $3::uuid
    FOR KEY SHARE
), claimed AS (
    UPDATE jobs j
    SET status = 'ASSIGNED', worker_id = $1, attempt = j.attempt + 1,
        claim_id = gen_random_uuid(), assigned_at = clock_timestamp(),
        updated_at = clock_timestamp()
    WHERE j.job_id = ANY ($2::uuid[]) AND j.status = 'PENDING' AND j.queue_name = $5
      AND j.shard = $7::smallint
      AND j.job_id BETWEEN jobq_ids_low($2::uuid[]) AND jobq_ids_high($2::uuid[])
      AND EXISTS (SELECT 1 FROM holder)
    RETURNING j.job_id, j.queue_name, j.payload, j.status, j.priority, j.max_retries,
              j.retry_count, j.attempt, j.worker_id, j.result, j.error_message, j.not_before,
              j.created_at, j.started_at, j.completed_at, j.updated_at, j.interruptions,
              j.claim_id, j.concurrency_key, j.trace_context
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, worker_id, reason, attempt, claim_id,
                            occurred_at, shard)
    SELECT job_id, 'PENDING', 'ASSIGNED', worker_id, 'ASSIGNED', attempt, claim_id, updated_at,
           $7::smallint
    FROM claimed
), announced AS (
    -- As in jobs_claim: a claimed job that a transactional enqueue wrote and no server
    -- announced yet.
    DELETE FROM enqueued_jobs e
    WHERE e.job_id = ANY (ARRAY(SELECT job_id FROM claimed)) AND e.shard = $7::smallint
    RETURNING e.job_id
), started AS (
    INSERT INTO queue_starts (queue_name, concurrency_key, started_at, shard)
    SELECT queue_name, concurrency_key, updated_at, $7::smallint FROM claimed WHERE $4::boolean
), pruned AS (
    DELETE FROM queue_starts s
    WHERE $4::boolean AND s.queue_name = $5 AND s.shard = $7::smallint

      AND s.started_at <= clock_timestamp() - $6::integer * interval '1 millisecond'
)
SELECT c.*, q.ttl_seconds, c.job_id IN (SELECT job_id FROM announced) AS unannounced
FROM claimed c JOIN queues q ON q.name = c.queue_name
ORDER BY c.priority DESC, c.created_at, c.job_id;
